"""The benchmarks' models: a checkpoint as Load Checkpoint loads it, or a diffusion model with its own text encoder
and VAE as Load Diffusion Model, Load CLIP and Load VAE load them (FLUX.1, FLUX.1 Fill, FLUX.2, Qwen-Image, Z-Image).

Import after ComfyUI is on sys.path. Everything loads under inference mode, as ComfyUI's executor runs loaders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="checkpoint file name, e.g. tiny_sd15.safetensors")
    source.add_argument("--unet", type=Path, help="diffusion model file (Load Diffusion Model); needs --vae, --clip")
    parser.add_argument("--ckpt-dir", type=Path, help="folder holding --ckpt if not in ComfyUI's models/checkpoints")
    parser.add_argument("--vae", type=Path, help="with --unet: the VAE file (Load VAE)")
    parser.add_argument(
        "--clip",
        type=Path,
        help="with --unet: the text encoder file (Load CLIP), or with --clip-type checkpoint a checkpoint whose "
        "text encoder is used (e.g. tiny_sd15's CLIP-L for the test DiTs, which take 768-wide conditioning)",
    )
    parser.add_argument("--clip-type", default="checkpoint", help="Load CLIP's type (flux2, ...) or checkpoint")


TEST_CONFIG = "dreammix_test_config"
"""The metadata key of the tests' shrunk text encoders (tests/comfy/make_qwen_models.py), which Load CLIP would build
at full size."""


def is_shrunk_text_encoder(path: Path) -> bool:
    """Whether `path` is one of the tests' shrunk text encoders, read from the safetensors header alone: a released
    encoder is gigabytes, and Load CLIP reads it whole anyway."""
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return False
    with safe_open(str(path), "pt") as file:
        return TEST_CONFIG in (file.metadata() or {})


def shrunk_text_encoder(path: Path, clip_type: str):
    """A shrunk test text encoder, loaded by the tests' own loader node (ComfyUI's loading code with the file's
    config)."""
    import folder_paths

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "comfy"))
    from test_nodes import DreamMixTestTextEncoderLoader

    folder_paths.add_model_folder_path("text_encoders", str(path.parent.resolve()))
    return DreamMixTestTextEncoderLoader().load(path.name, clip_type)[0]


def model_name(args: argparse.Namespace) -> str:
    return args.ckpt or args.unet.name


def load_models(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model, clip, vae) from the arguments `add_model_arguments` added."""
    import comfy.sd
    import comfy.utils
    import folder_paths

    with torch.inference_mode():
        if args.ckpt:
            if args.ckpt_dir is not None:
                folder_paths.add_model_folder_path("checkpoints", str(args.ckpt_dir.resolve()), is_default=True)
            path = folder_paths.get_full_path_or_raise("checkpoints", args.ckpt)
            model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
                path, output_vae=True, output_clip=True, embedding_directory=folder_paths.get_folder_paths("embeddings")
            )
            return model, clip, vae
        if args.vae is None or args.clip is None:
            raise SystemExit("--unet needs --vae and --clip")
        model = comfy.sd.load_diffusion_model(str(args.unet))
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(args.vae)))
        if args.clip_type == "checkpoint":
            clip = comfy.sd.load_checkpoint_guess_config(str(args.clip), output_vae=False, output_clip=True)[1]
        elif is_shrunk_text_encoder(args.clip):
            clip = shrunk_text_encoder(args.clip, args.clip_type)
        else:
            clip = comfy.sd.load_clip(
                ckpt_paths=[str(args.clip)],
                embedding_directory=folder_paths.get_folder_paths("embeddings"),
                clip_type=getattr(comfy.sd.CLIPType, args.clip_type.upper()),
            )
        return model, clip, vae
