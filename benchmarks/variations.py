"""N results from DreamMix Inpaint: one run with `variations` N against N separate runs.

Why: a user who wants several candidates either queues N runs or sets `variations`, which samples
the N as one batch per stage (one sampler call each for LCG and GCH, the crop encoded once). On a GPU
a batch of N costs far less than N times one image until the device is saturated; on a CPU, which
is saturated by one image, the gain is what the batch shares: the crop's fill and encode, the model
and sampler set-up per call, and the composite.

What runs, alternately, with the same model, scene and settings as inference_overhead.py (resolution
= --size): "batched" is one DreamMix Inpaint run with variations N; "separate" is N runs with
variations 1 and seeds seed .. seed + N - 1. Time and memory are measured as there.

The last line printed is exactly `RATIO time=<batched/separate> memory=<batched/separate>`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from inference_overhead import (
    POSITIVE_PROMPT,
    Workload,
    add_sampling_arguments,
    benchmark,
    dreammix_runner,
    encode_prompt,
    load_pack,
    make_mask,
    make_scene,
    prepare_host,
    print_report,
)
from model_files import add_model_arguments, load_models, model_name


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout to import as a library")
    add_model_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="side of the square scene in pixels")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="measured rounds, after one warm-up each")
    add_sampling_arguments(parser)
    args = parser.parse_args(argv)
    if args.size % 64 or args.size < 64 or args.variations < 1:
        parser.error("--size must be a positive multiple of 64 and --variations at least 1")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    prepare_host(args.comfyui)

    with tempfile.TemporaryDirectory(prefix="dreammix-bench-") as custom_nodes:
        run_dreammix = dreammix_runner(load_pack(Path(custom_nodes)))
        model, clip, vae = load_models(args)
        work = Workload(
            model, vae, encode_prompt(clip, POSITIVE_PROMPT), encode_prompt(clip, ""), make_scene(args.size),
            make_mask(args.size), args.seed, args.steps, args.cfg, args.sampler, args.scheduler, inpainting=False,
        )  # fmt: skip

        def separate() -> torch.Tensor:
            return torch.cat([run_dreammix(replace(work, seed=work.seed + i)) for i in range(args.variations)])

        runs = {"batched": lambda: run_dreammix(work, variations=args.variations), "separate": separate}
        with torch.inference_mode():
            results = benchmark(runs, args.repeats)
    print_report(
        results,
        f"model {model_name(args)}  size {args.size}  steps {args.steps}  variations {args.variations}  "
        f"sampler {args.sampler}/{args.scheduler}",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
