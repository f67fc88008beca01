"""Time and peak memory of DreamMix subject-LoRA training against ComfyUI's native TrainLoraNode.

Both train on the same loaded checkpoint, in this one process, with the same rank, resolution,
number of optimizer steps (gradient accumulation 1, batch 1), fp32, AdamW, seed, and gradient
checkpointing off (on in both with --gradient-checkpointing). DreamMix trains on 4 synthetic subject
photos (10 augmented copies each, Bézier masks, mask-weighted epsilon loss, k/v/out attention LoRA,
no regular data); native TrainLoraNode trains a LoRA on every weight of the UNet (its only mode) on
the 4 photos' latents with its MSE on x0. So the ratio compares the two as a user runs them, not
identical work: DreamMix builds 40 augmented copies and VAE-encodes each distinct crop once (the
square photos here give one crop each; native gets latents from outside: its VAE encode of the 4
photos is timed here too) and adapts fewer layers. Native is called through its class, as ComfyUI's
executor would; the pack never calls it. The checkpoint is loaded under inference mode, as
CheckpointLoaderSimple runs in the executor.

Memory: CUDA peak allocated during the run (after reset_peak_memory_stats), else the peak growth of
the process RSS over its value before the run, sampled every 5 ms (see inference_overhead.py).

usage: python benchmarks/training_cost.py --comfyui /opt/ComfyUI --ckpt tiny_sd15.safetensors \
    --ckpt-dir ~/.cache/dreammix-tests/checkpoints --size 256 --steps 20
FLUX: --unet MODEL --vae VAE --clip TEXT_ENCODER --clip-type flux2 in place of --ckpt (model_files.py).
Native TrainLoraNode is called as ComfyUI calls it: its V3 form (v0.33: every input a list, the rest of its
inputs at their defaults) or its V1 `train` method (v0.3.64).
Before it, for scripts (gpu_check.sh): `PEAK_MIB dreammix=<MiB> native=<MiB>` and `SPEED dreammix=<optimizer steps
per second> native=<...>`. Last line: `RATIO time=<dreammix/native> memory=<dreammix/native>`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from model_files import add_model_arguments, load_models, model_name

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_DIR_NAME = "ComfyUI-DreamMix"


class PeakMemory:
    """CUDA peak allocated bytes, or peak RSS growth sampled by a thread on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.max_memory_allocated()
            return self
        self.process = psutil.Process()
        self.base = self.process.memory_info().rss
        self.stop = threading.Event()

        def sample() -> None:
            while not self.stop.is_set():
                self.peak = max(self.peak, self.process.memory_info().rss - self.base)
                time.sleep(0.005)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.stop.set()
            self.thread.join()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True)
    add_model_arguments(parser)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--cpu", action="store_true", help="run ComfyUI on CPU")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="turn on gradient checkpointing in both trainers"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(args.comfyui))
    os.chdir(args.comfyui)
    sys.argv = [sys.argv[0], *(["--cpu"] if args.cpu or not torch.cuda.is_available() else [])]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management
    import comfy.sd
    import folder_paths
    from comfy_extras.nodes_train import TrainLoraNode

    import nodes

    work = tempfile.mkdtemp(prefix="dreammix_bench_")
    folder_paths.add_model_folder_path("loras", os.path.join(work, "loras"), is_default=True)
    pack_link = Path(work) / PACK_DIR_NAME
    pack_link.symlink_to(REPO_ROOT, target_is_directory=True)
    if not asyncio.run(nodes.load_custom_node(str(pack_link))):
        raise SystemExit("the pack did not load")
    training = importlib.import_module(str(pack_link).replace(".", "_x_") + ".nodes.training")

    model, clip, vae = load_models(args)
    device = comfy.model_management.get_torch_device()

    generator = torch.Generator().manual_seed(0)
    size = args.size
    images = torch.full((4, size, size, 3), 0.5)
    masks = torch.zeros(4, size, size)
    for i in range(4):
        images[i, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = torch.rand(3, generator=generator)
        masks[i, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1

    def dreammix(run: int) -> None:
        recipe = {
            "instance_prompt": "a photo of a sks box", "regular_dataset": "", "lora_name": f"bench_{run}",
            "steps": args.steps, "learning_rate": 1e-4, "rank": args.rank, "alpha": float(args.rank),
            "target_modules": "attention k, v, out (DreamMix)", "grad_accumulation": 1,
            "regular_probability": 0.3, "inside_weight": 1.5, "outside_weight": 0.6, "subject_copies": 10,
            "regular_copies": 3, "resolution": size, "seed": 0, "checkpoint_every": 0,
            "gradient_checkpointing": args.gradient_checkpointing, "training_dtype": "fp32",
        }  # fmt: skip
        with torch.inference_mode():
            training.DreamMixTrainSubjectLoRA.execute(
                [model], [clip], [vae], [images], [masks], **{k: [v] for k, v in recipe.items()}
            )

    train_native = native_trainer(TrainLoraNode, args)

    def native(run: int) -> None:
        with torch.inference_mode():
            latents = {"samples": vae.encode(images)}
            positive = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a sks box"))
            train_native(model, latents, positive)

    results = {}
    for name, fn in (("dreammix", dreammix), ("native", native)):
        fn(0)  # warm-up
        comfy.model_management.unload_all_models()
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            fn(1)
            seconds = time.perf_counter() - start
        comfy.model_management.unload_all_models()
        results[name] = (seconds, memory.peak)
        print(f"{name}: {seconds:.2f} s, peak {memory.peak / 2**20:.1f} MiB ({device.type})", flush=True)
    time_ratio = results["dreammix"][0] / results["native"][0]
    memory_ratio = results["dreammix"][1] / max(results["native"][1], 1)
    print(f"model {model_name(args)}  size {size}  steps {args.steps}  rank {args.rank}  device {device.type}")
    print("PEAK_MIB " + " ".join(f"{name}={peak / 2**20:.1f}" for name, (_, peak) in results.items()))
    print("SPEED " + " ".join(f"{name}={args.steps / seconds:.3f}" for name, (seconds, _) in results.items()))
    print(f"RATIO time={time_ratio:.3f} memory={memory_ratio:.3f}")


def native_trainer(node: type, args: argparse.Namespace):
    """(model, latents, positive) -> ComfyUI's TrainLoraNode run with the benchmark's settings."""
    settings = {
        "batch_size": 1, "steps": args.steps, "grad_accumulation_steps": 1, "learning_rate": 1e-4,
        "rank": args.rank, "optimizer": "AdamW", "loss_function": "MSE", "seed": 0, "training_dtype": "fp32",
        "lora_dtype": "fp32", "algorithm": "LoRA", "gradient_checkpointing": args.gradient_checkpointing,
        "existing_lora": "[None]",
    }  # fmt: skip
    if not hasattr(node, "define_schema"):  # V1 (ComfyUI v0.3.64)
        order = ("batch_size", "steps", "grad_accumulation_steps", "learning_rate", "rank", "optimizer",
                 "loss_function", "seed", "training_dtype", "lora_dtype", "algorithm", "gradient_checkpointing",
                 "existing_lora")  # fmt: skip
        return lambda model, latents, positive: node().train(
            model, latents, positive, *(settings[name] for name in order)
        )
    from comfy_api.internal import make_locked_method_func

    node.VALIDATE_CLASS()
    execute = make_locked_method_func(node, node.FUNCTION, node.PREPARE_CLASS_CLONE({}))
    defaults = {entry.id: getattr(entry, "default", None) for entry in node.GET_SCHEMA().inputs}

    def run(model, latents, positive):
        inputs = defaults | settings | {"model": model, "latents": latents, "positive": positive}
        return execute(**{name: [value] for name, value in inputs.items()})

    return run


if __name__ == "__main__":
    main(sys.argv[1:])
