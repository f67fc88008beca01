"""DreamMix Regular Data with `batch_size` N against one image at a time.

Why: the ADM needs about 30 regular images per prompt, generated before training. Sampled in batches
of N the model runs once per step for N images; on a GPU that costs far less than N runs until the
device is saturated, on a CPU the gain is what a batch shares (per-call set-up, the text encoding
is shared either way). Both paths write the same files up to rounding (test_regular_batches.py).

What runs, alternately: the node as ComfyUI's executor calls it, generating --images images of one
prompt into a fresh dataset folder each run (existing images would be reused), with batch_size 1
("one_by_one") and --batch-size ("batched"). Time and memory are measured as in inference_overhead.py.

The last line printed is exactly `RATIO time=<batched/one_by_one> memory=<batched/one_by_one>`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import torch
from inference_overhead import (
    benchmark,
    load_pack,
    prepare_host,
    print_report,
)
from model_files import add_model_arguments, load_models, model_name

NODE_ID = "DreamMixRegularData"
PROMPT = "a photo of a teapot"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout to import as a library")
    add_model_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="side of the generated images")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--images", type=int, default=8, help="images generated per run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="measured rounds, after one warm-up each")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    prepare_host(args.comfyui)
    import folder_paths
    from comfy_api.internal import make_locked_method_func

    with tempfile.TemporaryDirectory(prefix="dreammix-bench-") as work:
        folder_paths.set_output_directory(str(Path(work) / "output"))
        (Path(work) / "nodes").mkdir()
        node_cls = load_pack(Path(work) / "nodes", NODE_ID)
        node_cls.VALIDATE_CLASS()
        execute = make_locked_method_func(node_cls, node_cls.FUNCTION, node_cls.PREPARE_CLASS_CLONE({}))
        model, clip, vae = load_models(args)
        folders = itertools.count()

        def generate(batch_size: int) -> torch.Tensor:
            output = execute(
                model=model, clip=clip, vae=vae, regular_prompts=PROMPT, images_per_prompt=args.images,
                dataset_folder=f"regular_{next(folders)}", resolution=args.size, steps=args.steps, cfg=6.0,
                sampler_name="euler", scheduler="normal", seed=0, background_suffix=", white background",
                negative_prompt="blurry", mask_threshold=0.15, batch_size=batch_size,
            )  # fmt: skip
            return output.result[1]

        runs = {"batched": lambda: generate(args.batch_size), "one_by_one": lambda: generate(1)}
        with torch.inference_mode():
            results = benchmark(runs, args.repeats)
    print_report(
        results,
        f"model {model_name(args)}  size {args.size}  steps {args.steps}  images {args.images}  "
        f"batch size {args.batch_size}",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
