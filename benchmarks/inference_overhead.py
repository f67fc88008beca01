"""Time and peak-memory overhead of the one-shot DreamMix Inpaint node over ComfyUI's plain inpaint.

Why: the issue sets a budget for the one-shot node against a plain masked KSampler inpaint
with the same model, steps, sampler, scheduler, cfg and resolution: time <= 1.15x and peak
memory <= 1.10x (in particular no second copy of the UNet). Both paths run in this one process
on the same loaded checkpoint, alternately, so drift (caches, clocks, allocator state) hits
both alike.

What runs:
  dreammix  `DreamMixInpaint` as ComfyUI's executor calls a V3 node (class clone, locked
            class, `EXECUTE_NORMALIZED`), resolution = --size so the local crop is denoised at
            the plain inpaint's resolution, default switch, context and feather.
  plain     what VAEEncode + SetLatentNoiseMask (or InpaintModelConditioning for 9-channel
            inpainting models) + KSampler + VAEDecode do, written with library calls:
            `vae.encode`, noise mask = mask, `comfy.sample.prepare_noise`,
            `comfy.sample.sample(..., noise_mask=...)`, `vae.decode`.
Both run under `torch.inference_mode()` like ComfyUI's executor, with the same seed every run.
Same steps means the same number of UNet calls at about the same resolution (LCG's steps on
the crop, GCH's on the image). DreamMix inherently adds VAE work: plain encodes the image and
decodes the result once; DreamMix encodes the crop, decodes LCG's estimate, encodes the
composite and decodes the result (plus one masked-image encode per stage instead of one in
all for inpainting models). With a tiny random UNet and a full-size VAE that extra VAE work
weighs far more than with a real UNet, so the time ratio on test checkpoints overstates it.

The table gives wall time (the budget's measure) and process CPU time, which other load on a
shared machine disturbs much less; `--profile TOP` adds a cProfile of one extra run of each path.

What "memory" means:
  CUDA  `torch.cuda.max_memory_allocated()` during the run after `reset_peak_memory_stats()`:
        the peak of all tensors on the device, resident weights included, so a second UNet
        copy shows up as the UNet's size.
  CPU   the peak increase of the process's resident set size over its value just before the
        run, sampled every 5 ms by a background thread with psutil. It counts every allocation
        made during the run (activations, temporaries, any copy of weights), not the weights
        already resident. On Linux (glibc) RSS is made to follow live memory: glibc's mmap
        threshold is pinned at 128 KiB, so every tensor-sized block is its own mapping and goes
        back to the OS when freed (otherwise freed activations stay in malloc's heaps and the
        peak measures fragmentation: tens of percent between identical runs), `malloc_trim` returns
        free heap pages before each run. Both paths pay the same page faults for this.

Usage:
  python benchmarks/inference_overhead.py --comfyui /opt/ComfyUI --ckpt tiny_sd15.safetensors \
      --ckpt-dir ~/.cache/dreammix-tests/checkpoints --size 256 --steps 12
  python benchmarks/inference_overhead.py --comfyui /opt/ComfyUI --unet flux-2-klein-4b.safetensors \
      --vae flux2-vae.safetensors --clip qwen_3_4b.safetensors --clip-type flux2 --cfg 1 --scheduler simple
(--unet / --vae / --clip: FLUX models as Load Diffusion Model, Load VAE and Load CLIP load them; model_files.py.)

The last line printed is exactly `RATIO time=<dreammix/plain> memory=<dreammix/plain>`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import gc
import importlib
import math
import pstats
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil
import torch
from model_files import add_model_arguments, load_models, model_name

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_DIR_NAME = "ComfyUI-DreamMix"
NODE_ID = "DreamMixInpaint"
RSS_INTERVAL_S = 0.005
MIB = 1 << 20
MASK_SEMI_AXES = (0.33, 0.24)
"""Ellipse semi-axes as fractions of the side: pi * 0.33 * 0.24 ~ 0.25 of the image area."""
POSITIVE_PROMPT = "a photo of a red backpack on a wooden table"
DEFAULTED_INPUTS = ("switch", "context_factor", "feather", "global_max_area")
PROFILE_STAGES = rf"{PACK_DIR_NAME}|comfy/sd\.py:\d+\((encode|decode)\)|comfy/sample\.py"
"""pstats restriction: the pack's functions and ComfyUI's VAE encode/decode and sampling calls."""
M_MMAP_THRESHOLD = -3
"""mallopt parameter number from glibc's malloc.h."""
MMAP_THRESHOLD_BYTES = 128 * 1024


@dataclass(frozen=True)
class Workload:
    """Everything both paths share, so they differ only in the method."""

    model: Any
    vae: Any
    positive: list
    negative: list
    image: torch.Tensor
    mask: torch.Tensor
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    inpainting: bool
    """The model takes the mask and the masked image as extra input (the pack's own rule, `is_inpainting_model`)."""


@dataclass(frozen=True)
class Measurement:
    seconds: float
    """Wall time: what the issue's budget is about."""
    cpu_seconds: float
    """CPU time of all this process's threads; far less disturbed than wall time by other load on a shared machine."""
    peak_bytes: int


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """What both paths sample with (photo_size.py takes the same)."""
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--sampler", default="euler", help="e.g. euler or dpmpp_2m_sde")
    parser.add_argument("--scheduler", default="normal", help="e.g. normal or karras")
    parser.add_argument("--seed", type=int, default=0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout to import as a library")
    add_model_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="side of the square scene in pixels")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="measured runs of each path, after one warm-up each")
    add_sampling_arguments(parser)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="also cProfile one extra run of each path and print its TOP functions by own and by cumulative time",
    )
    args = parser.parse_args(argv)
    if args.size % 64 or args.size < 64:
        parser.error("--size must be a positive multiple of 64 (DreamMix's crop sizes are multiples of 64)")
    if args.repeats < 1 or args.steps < 1:
        parser.error("--repeats and --steps must be at least 1")
    return args


def import_comfyui(comfyui: Path) -> None:
    """Puts ComfyUI on sys.path with its default arguments, plus --cpu when CUDA is absent.

    As a library ComfyUI parses an empty command line (comfy.options.args_parsing is off);
    --cpu is set on the parsed namespace before anything imports `comfy.model_management`,
    which reads it once.
    """
    sys.path.insert(0, str(comfyui.resolve()))
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()


def prepare_host(comfyui: Path) -> None:
    """ComfyUI importable, its progress bars off (they would fill the output), RSS following live memory on CPU."""
    import_comfyui(comfyui)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    if not torch.cuda.is_available():
        make_rss_follow_live_memory()


def load_pack(custom_nodes: Path, node_id: str = NODE_ID) -> type:
    """Loads this repository as ComfyUI loads a custom node folder and returns the class of `node_id`."""
    import nodes

    link = custom_nodes / PACK_DIR_NAME
    link.symlink_to(REPO_ROOT, target_is_directory=True)
    if not asyncio.run(nodes.load_custom_node(str(link))):
        raise RuntimeError(f"ComfyUI could not load {REPO_ROOT} as a custom node pack (see the log above).")
    return nodes.NODE_CLASS_MAPPINGS[node_id]


def dreammix_runner(node_cls: type) -> Callable[[Workload], torch.Tensor]:
    """Runs the node through the callable ComfyUI's executor builds for a V3 node
    (execution.py `_async_map_node_over_list`), with the node's own defaults for switch,
    context and feather so the benchmark follows the pack when they change."""
    from comfy_api.internal import make_locked_method_func

    node_cls.VALIDATE_CLASS()
    execute = make_locked_method_func(node_cls, node_cls.FUNCTION, node_cls.PREPARE_CLASS_CLONE({}))
    inputs = {entry.id: entry for entry in node_cls.GET_SCHEMA().inputs}
    defaults = {name: inputs[name].default for name in DEFAULTED_INPUTS}

    def run(work: Workload, **overrides: Any) -> torch.Tensor:
        """`overrides`: other values for the node's inputs (photo_size.py sets resolution and global_max_area)."""
        fixed = {"resolution": work.image.shape[2], **defaults, **overrides}
        output = execute(
            model=work.model,
            positive=work.positive,
            negative=work.negative,
            vae=work.vae,
            image=work.image,
            mask=work.mask,
            seed=work.seed,
            steps=work.steps,
            cfg=work.cfg,
            sampler_name=work.sampler_name,
            scheduler=work.scheduler,
            **fixed,
        )
        return output.result[0]

    return run


def encode_prompt(clip: Any, text: str) -> list:
    """What CLIPTextEncode returns, from the CLIP object's own API."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def make_scene(size: int) -> torch.Tensor:
    """A deterministic (1, size, size, 3) scene: smooth colour gradients with a horizon and a box."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    image = torch.stack([0.3 + 0.5 * xs, 0.4 + 0.3 * torch.sin(6 * ys), 0.8 - 0.5 * ys], dim=-1)
    image[ys > 0.6] = torch.tensor([0.45, 0.3, 0.2])
    image[(xs > 0.05) & (xs < 0.25) & (ys > 0.4) & (ys < 0.75)] = torch.tensor([0.2, 0.5, 0.8])
    return image.clamp(0, 1).unsqueeze(0)


def make_mask(size: int) -> torch.Tensor:
    """A (1, size, size) centred ellipse covering about a quarter of the image."""
    centre = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    a, b = (axis * size for axis in MASK_SEMI_AXES)
    inside = ((xs - centre) / a) ** 2 + ((ys - centre) / b) ** 2 <= 1
    return inside.float().unsqueeze(0)


def plain_conditioning(work: Workload) -> tuple[list, list, torch.Tensor]:
    """(positive, negative, latent) as VAEEncode, or InpaintModelConditioning for inpainting models, make them."""
    import node_helpers

    pixels = work.image[..., :3]
    if not work.inpainting:
        return work.positive, work.negative, work.vae.encode(pixels)
    masked = (pixels - 0.5) * (1.0 - work.mask.round()).unsqueeze(-1) + 0.5
    concat = {"concat_latent_image": work.vae.encode(masked), "concat_mask": work.mask.unsqueeze(1)}
    positive = node_helpers.conditioning_set_values(work.positive, concat)
    negative = node_helpers.conditioning_set_values(work.negative, concat)
    return positive, negative, work.vae.encode(pixels)


def run_plain(work: Workload) -> torch.Tensor:
    """ComfyUI's masked inpaint (common_ksampler with a noise mask) from library calls only."""
    import comfy.sample
    import comfy.utils
    import latent_preview

    positive, negative, latent = plain_conditioning(work)
    latent = comfy.sample.fix_empty_latent_channels(work.model, latent)
    noise = comfy.sample.prepare_noise(latent, work.seed)
    samples = comfy.sample.sample(
        work.model,
        noise,
        work.steps,
        work.cfg,
        work.sampler_name,
        work.scheduler,
        positive,
        negative,
        latent,
        denoise=1.0,
        noise_mask=work.mask.unsqueeze(1),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        callback=latent_preview.prepare_callback(work.model, work.steps),
        seed=work.seed,
    )
    return work.vae.decode(samples)


def glibc() -> ctypes.CDLL | None:
    return ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None


def make_rss_follow_live_memory() -> None:
    """Pins glibc's mmap threshold so freed tensors leave the RSS at once (see the module docstring)."""
    libc = glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_freed_memory() -> None:
    """Collects garbage and returns free heap pages to the OS, so RSS starts each run from what is live."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


class RssPeak:
    """Samples the process RSS in a background thread; `peak` is the largest value seen."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_S):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def timed(run: Callable[[], torch.Tensor], wait: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """(wall, process CPU) seconds of `run`; `wait` blocks until queued device work is done."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wait()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(run: Callable[[], torch.Tensor]) -> Measurement:
    """Wall time, CPU time and peak memory (see the module docstring) of one run."""
    release_freed_memory()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        seconds, cpu_seconds = timed(run, torch.cuda.synchronize)
        return Measurement(seconds, cpu_seconds, torch.cuda.max_memory_allocated())
    with RssPeak() as rss:
        seconds, cpu_seconds = timed(run)
    return Measurement(seconds, cpu_seconds, rss.peak - rss.baseline)


def benchmark(runs: dict[str, Callable[[], torch.Tensor]], repeats: int) -> dict[str, list[Measurement]]:
    """One warm-up of each path, then `repeats` rounds alternating the paths."""
    for run in runs.values():
        run()
    results: dict[str, list[Measurement]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(measure(run))
    return results


def print_profile(runs: dict[str, Callable[[], torch.Tensor]], top: int) -> None:
    """For one extra run of each path: own time shows the costly torch ops; cumulative time, restricted to the
    pack and ComfyUI's VAE and sampler entry points, shows which stage spends it (extra VAE calls, fill, ...), and
    the two paths' sampler and VAE lines compare directly."""
    for name, run in runs.items():
        print(f"==== profile of one {name} run")
        profiler = cProfile.Profile()
        profiler.runcall(run)
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
        stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(PROFILE_STAGES, top)


def print_table(results: dict[str, list[Measurement]], device: str) -> None:
    memory = "peak allocated" if device == "cuda" else "peak RSS increase"
    print(f"{'path':<10} {'runs':>4} {'wall s median':>14} {'min':>8} {'max':>8} {'cpu s median':>13}   {memory} MiB")
    for name, runs in results.items():
        seconds = [m.seconds for m in runs]
        cpu_seconds = median(runs, "cpu_seconds")
        peaks = " ".join(f"{m.peak_bytes / MIB:.1f}" for m in runs)
        print(
            f"{name:<10} {len(runs):>4} {statistics.median(seconds):>14.3f} {min(seconds):>8.3f} "
            f"{max(seconds):>8.3f} {cpu_seconds:>13.3f}   {peaks}"
        )
    first, second = list(results)[:2]
    print(f"cpu-time ratio {ratio(results, 'cpu_seconds'):.3f} ({first}/{second}, medians)")


def print_report(results: dict[str, list[Measurement]], settings: str, steps: int | None = None) -> None:
    """The settings line with the device, the table, `PEAK_MIB <path>=<median>` per path, with `steps` (sampling
    steps per run) `SPEED <path>=<steps per second>`, and last `RATIO time=<first/second> memory=<first/second>`.
    The upper-case lines are for scripts (gpu_check.sh)."""
    import comfy.model_management

    device = comfy.model_management.get_torch_device().type
    print(f"{settings}  device {device}  torch threads {torch.get_num_threads()}")
    print_table(results, device)
    print("PEAK_MIB " + " ".join(f"{name}={median(runs, 'peak_bytes') / MIB:.1f}" for name, runs in results.items()))
    if steps is not None:
        print("SPEED " + " ".join(f"{name}={steps / median(runs, 'seconds'):.3f}" for name, runs in results.items()))
    print(f"RATIO time={ratio(results, 'seconds'):.3f} memory={ratio(results, 'peak_bytes'):.3f}")


def median(runs: list[Measurement], field: str) -> float:
    return statistics.median(getattr(m, field) for m in runs)


def ratio(results: dict[str, list[Measurement]], field: str) -> float:
    """The first path's median over the second's (dreammix/plain here)."""
    first, second = (median(runs, field) for runs in list(results.values())[:2])
    return first / second if second else math.inf


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    prepare_host(args.comfyui)

    with tempfile.TemporaryDirectory(prefix="dreammix-bench-") as custom_nodes:
        node_cls = load_pack(Path(custom_nodes))
        run_dreammix = dreammix_runner(node_cls)
        backend = importlib.import_module(node_cls.__module__.rpartition(".")[0] + ".comfy_backend")
        model, clip, vae = load_models(args)
        work = Workload(
            model,
            vae,
            encode_prompt(clip, POSITIVE_PROMPT),
            encode_prompt(clip, ""),
            make_scene(args.size),
            make_mask(args.size),
            args.seed,
            args.steps,
            args.cfg,
            args.sampler,
            args.scheduler,
            backend.is_inpainting_model(model),
        )
        runs = {"dreammix": lambda: run_dreammix(work), "plain": lambda: run_plain(work)}
        with torch.inference_mode():
            results = benchmark(runs, args.repeats)
            if args.profile:
                print_profile(runs, args.profile)
    print_report(
        results,
        f"model {model_name(args)}  size {args.size}  steps {args.steps}  sampler {args.sampler}/{args.scheduler}  "
        f"cfg {args.cfg}",
        args.steps,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
