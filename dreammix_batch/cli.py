"""The `dreammix-batch` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dreammix_core.errors import DreamMixInputError

from .cases import load_cases
from .client import ServerError, check_server_address
from .in_process import start_comfyui
from .results import score_cases, table_markdown, write_results
from .runner import OUTPUT_PREFIX, run_cases
from .workflow import DEFAULT_WORKFLOW, Options, load_workflow, prepare_graph

DEFAULT_SERVER = "http://127.0.0.1:8188"


def _seeds(values: Sequence[str]) -> list[int]:
    seeds = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                seeds.append(int(part))
            except ValueError:
                raise DreamMixInputError(f"--seeds takes whole numbers, not '{part}'.") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise DreamMixInputError("--seeds needs at least one seed, each 0 or more.")
    return list(dict.fromkeys(seeds))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreammix-batch",
        description="Run a DreamMix API workflow over a folder of cases on ComfyUI servers and score the results.",
    )
    parser.add_argument("cases", help="folder of cases: <name>/scene.png, mask.png (white = subject), prompt.txt")
    parser.add_argument("--out", required=True, help="output folder: images/<case>/seed<N>.png, results.csv/.md")
    parser.add_argument("--workflow", default=str(DEFAULT_WORKFLOW), help="API-format workflow (default: %(default)s)")
    parser.add_argument(
        "--server", action="append", default=None, help=f"ComfyUI server address, repeatable (default {DEFAULT_SERVER})"
    )
    parser.add_argument(
        "--comfyui",
        help="a ComfyUI folder to start in this process instead of using a server (run with ComfyUI's python)",
    )
    parser.add_argument(
        "--comfyui-args", default="", help="ComfyUI command-line options for --comfyui, in one string, e.g. '--cpu'"
    )
    parser.add_argument("--seeds", nargs="+", default=["0"], help="seeds, e.g. 0 1 2 or 0,1,2 (default 0)")
    parser.add_argument("--ckpt", help="CheckpointLoaderSimple's ckpt_name")
    parser.add_argument("--lora", help="LoRA file name (models/loras), loaded after the checkpoint")
    parser.add_argument("--lora-strength", type=float, default=1.0)
    parser.add_argument("--lora-model-only", action="store_true", help="LoraLoaderModelOnly: the UNet only")
    parser.add_argument("--steps", type=int, help="override DreamMixInpaint's steps")
    parser.add_argument("--resolution", type=int, help="override DreamMixInpaint's working resolution")
    parser.add_argument("--cfg", type=float, help="override DreamMixInpaint's cfg")
    parser.add_argument("--references", help="reference photos: a folder of images, or of <case>/ folders of them")
    parser.add_argument("--class-word", default="", help="the subject's class word ('dog'); replaces 'sks' for CLIP-T")
    parser.add_argument(
        "--clip-model", default=None, help="CLIP folder or Hub id (default openai/clip-vit-large-patch14)"
    )
    parser.add_argument("--dino-model", default=None, help="DINO folder or Hub id (default facebook/dino-vits16)")
    parser.add_argument("--no-metrics", action="store_true", help="generate only; leave the metric columns empty")
    parser.add_argument("--allow-download", action="store_true", help="let metric models download from the Hub")
    parser.add_argument("--device", default=None, help="device for the metrics (default: cuda if available, else cpu)")
    parser.add_argument("--limit", type=int, help="run at most this many unfinished cases, then stop")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one image may take (default 1800)")
    return parser


def main(argv: Sequence[str] | None = None, print_fn: Callable[..., None] = print) -> int:
    args = build_parser().parse_args(argv)
    try:
        seeds = _seeds(args.seeds)
        if args.limit is not None and args.limit < 1:
            raise DreamMixInputError("--limit must be 1 or more.")
        for url in args.server or []:
            check_server_address(url)
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise DreamMixInputError(f"--out {args.out} is a file: give a folder for the images and tables.")
        if args.server and args.comfyui:
            raise DreamMixInputError("Give --server (running ComfyUI servers) or --comfyui (start one here), not both.")
        if args.lora_model_only and not args.lora:
            raise DreamMixInputError("--lora-model-only needs --lora NAME.")
        cases = load_cases(args.cases, args.references, args.class_word)
        template = load_workflow(args.workflow)
        options = Options(
            args.ckpt, args.lora, args.lora_strength, args.lora_model_only, args.steps, args.resolution, args.cfg
        )
        prepare_graph(template, "check.png", "check", seeds[0], OUTPUT_PREFIX, options)  # the options fit the graph
        if not args.no_metrics:
            from dreammix_core.evaluation.metrics import clip_t_text

            for case in cases:
                try:
                    clip_t_text(case.prompt, case.class_word)
                except DreamMixInputError as error:
                    raise DreamMixInputError(f"{case.folder / 'prompt.txt'}: {error} Use --class-word.") from None
    except DreamMixInputError as error:
        print_fn(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        servers = args.server or [DEFAULT_SERVER]
        if args.comfyui:
            print_fn(f"starting ComfyUI from {args.comfyui} in this process ...")
            servers = [start_comfyui(args.comfyui, args.comfyui_args)]
        report = run_cases(cases, seeds, out, servers, template, options, limit=args.limit, timeout=args.timeout)
    except (ServerError, DreamMixInputError) as error:
        print_fn(f"error: {error}", file=sys.stderr)
        return 1
    if report.skipped:
        print_fn(f"skipped {len(report.skipped)} finished case(s): {', '.join(report.skipped)}")
    for url, names in report.by_server.items():
        print_fn(f"{url} ran {len(names)} case(s): {', '.join(names)}")
    for name, message in report.failed.items():
        print_fn(f"case {name} failed: {message}", file=sys.stderr)
    if args.no_metrics:
        clip_source = dino_source = ""
    else:
        from dreammix_core.evaluation.metrics import DEFAULT_CLIP, DEFAULT_DINO

        clip_source, dino_source = args.clip_model or DEFAULT_CLIP, args.dino_model or DEFAULT_DINO
    device = args.device
    if device is None:
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
    try:
        table, per_image = score_cases(
            cases, seeds, out, clip_source, dino_source, device=device, allow_download=args.allow_download
        )
    except DreamMixInputError as error:
        print_fn(f"error while scoring: {error}", file=sys.stderr)
        return 1
    write_results(out, table, per_image)
    print_fn(table_markdown(table))
    print_fn(f"images: {out / 'images'}")
    print_fn(f"results: {out / 'results.csv'} and {out / 'results.md'}")
    if report.interrupted:
        return 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT), so scripts see it stopped early
    return 1 if report.failed else 0
