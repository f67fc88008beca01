"""DreamMix Inpaint's time and peak memory against photo size, with GCH's pixel budget on and off.

Why: the paper's GCH denoises the whole photo, so its cost grows with the photo (attention with the
square of the token count); with the budget (`global_max_area`, docs/method.md §2 "GCH window") GCH
runs on a window around the mask once the photo exceeds it, so a 16 MP photo should cost about what a
1 MP one does. Goal (budget on): time and peak memory at 16 MP at most 1.5× those at 1 MP.

What runs: the same synthetic scene and mask at each size (default sides 512, 1024, 2048, 4096:
0.26, 1.05, 4.2 and 16.8 MP), the scene scaled as a whole, so the mask (an ellipse over about 3.8 %
of the photo, the size of an object placed on a table) covers the same share of the subject and of
the photo at every size. DreamMix Inpaint runs at resolution 0 (the model's native working area) with
the node's default budget ("on") and with 0 ("off": the whole photo, as the paper); ComfyUI's plain
inpaint (inference_overhead.run_plain) runs at the same sizes as "off". Both whole-photo paths stop
at --whole-photo-up-to megapixels: beyond it they need the UNet and the VAE on the whole photo, which
on a CPU takes tens of minutes per run (and on 24 GiB, the VAE's attention over a 16 MP latent does
not fit). Time and memory are measured as in inference_overhead.py (wall and CPU seconds; CUDA peak
allocated or CPU peak RSS increase), one warm-up run at the smallest size first.

Usage:
  python benchmarks/photo_size.py --comfyui /opt/ComfyUI --ckpt tiny_sd15.safetensors \
      --ckpt-dir ~/.cache/dreammix-tests/checkpoints --steps 4

The last line printed is exactly `SCALING time_16_over_1=<x> memory_16_over_1=<y>` (budget on; the
largest size over the size nearest 1 MP).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from inference_overhead import (
    POSITIVE_PROMPT,
    Measurement,
    Workload,
    add_sampling_arguments,
    dreammix_runner,
    encode_prompt,
    load_pack,
    make_scene,
    measure,
    prepare_host,
    run_plain,
)
from model_files import add_model_arguments, load_models, model_name

MIB = 1 << 20
MASK_CENTRE = (0.55, 0.6)
"""(x, y) of the ellipse's centre as fractions of the side: on the scene's table, off the image centre."""
MASK_SEMI_AXES = (0.12, 0.1)
"""Semi-axes as fractions of the side: pi * 0.12 * 0.1 ~ 3.8 % of the photo."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout to import as a library")
    add_model_arguments(parser)
    parser.add_argument("--sides", default="512,1024,2048,4096", help="comma-separated square photo sides")
    parser.add_argument("--steps", type=int, default=4)
    add_sampling_arguments(parser)
    parser.add_argument(
        "--whole-photo-up-to",
        type=float,
        default=4.5,
        metavar="MP",
        help="largest photo (megapixels) the budget-off and plain paths run on",
    )
    args = parser.parse_args(argv)
    args.sides = [int(side) for side in args.sides.split(",")]
    if any(side % 64 or side < 64 for side in args.sides):
        parser.error("--sides must be positive multiples of 64")
    return args


def make_mask(side: int) -> torch.Tensor:
    """A (1, side, side) ellipse, the same share of the photo at every side."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    (cx, cy), (a, b) = ((f * side for f in pair) for pair in (MASK_CENTRE, MASK_SEMI_AXES))
    return ((((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2) <= 1).float().unsqueeze(0)


def megapixels(side: int) -> float:
    return side * side / 1e6


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    prepare_host(args.comfyui)
    import comfy.model_management

    table: dict[tuple[int, str], Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="dreammix-bench-") as custom_nodes:
        node_cls = load_pack(Path(custom_nodes))
        run_dreammix = dreammix_runner(node_cls)
        model, clip, vae = load_models(args)
        positive, negative = encode_prompt(clip, POSITIVE_PROMPT), encode_prompt(clip, "")

        def workload(side: int) -> Workload:
            return Workload(
                model, vae, positive, negative, make_scene(side), make_mask(side), args.seed, args.steps, args.cfg,
                args.sampler, args.scheduler, inpainting=False,
            )  # fmt: skip

        paths = {
            "on": lambda work: run_dreammix(work, resolution=0),
            "off": lambda work: run_dreammix(work, resolution=0, global_max_area=0.0),
            "plain": run_plain,
        }
        with torch.inference_mode():
            paths["on"](workload(min(args.sides)))  # warm-up: model loads, allocator, kernels
            for side in args.sides:
                work = workload(side)
                for name, run in paths.items():
                    if name != "on" and megapixels(side) > args.whole_photo_up_to:
                        continue
                    table[side, name] = measure(lambda: run(work))
                    print(f"  {side}² {name}: {table[side, name].seconds:.1f} s", file=sys.stderr, flush=True)
    device = comfy.model_management.get_torch_device().type
    memory = "peak allocated" if device == "cuda" else "peak RSS increase"
    print(
        f"model {model_name(args)}  device {device}  steps {args.steps}  sampler {args.sampler}/{args.scheduler}  "
        f"resolution 0  torch threads {torch.get_num_threads()}"
    )
    print(f"{'photo':>11} {'MP':>6} {'path':>6} {'wall s':>9} {'cpu s':>9} {memory + ' MiB':>24}")
    for (side, name), m in table.items():
        print(
            f"{side:>5}x{side:<5} {megapixels(side):>6.2f} {name:>6} {m.seconds:>9.2f} {m.cpu_seconds:>9.2f} "
            f"{m.peak_bytes / MIB:>24.1f}"
        )
    largest = max(args.sides)
    one = min(args.sides, key=lambda side: abs(megapixels(side) - 1))
    big, base = table[largest, "on"], table[one, "on"]
    print(
        f"SCALING time_16_over_1={big.seconds / base.seconds:.3f} "
        f"memory_16_over_1={big.peak_bytes / max(base.peak_bytes, 1):.3f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
