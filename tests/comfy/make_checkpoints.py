"""Write tiny random-weight single-file checkpoints that ComfyUI detects as SD1.5 / SDXL.

No real weights can be downloaded for the ComfyUI test tier, so the models are built
from ComfyUI's own classes (model_detection configs, model_base, sd1/sdxl CLIP, the SD
VAE) and serialised with ComfyUI's own `state_dict_for_saving`: the keys are then
exactly what `CheckpointLoaderSimple` expects.  Each file is verified by loading it with
`comfy.sd.load_checkpoint_guess_config` before it is moved into place.

Run it with the python that runs ComfyUI (it imports `comfy`):

    python make_checkpoints.py --comfyui /path/to/ComfyUI OUT_DIR [NAME ...]

Files already written from the current recipe are skipped, stale ones rewritten.  One
JSON line per checkpoint goes to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for real inside functions, after import_comfy() set up sys.path
    import torch

# What ComfyUI's detect_unet_config returns for every UNet checkpoint.
_UNET_COMMON: dict[str, Any] = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "out_channels": 4,
    "model_channels": 320,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}

# SD1.5 is detected from model_channels 320 + context_dim 768 + no linear proj, whatever
# the depth.  Two levels of one res block; the single transformer (first input level) is
# the one detection needs to read context_dim.  About 57M UNet params; every extra
# transformer costs 15-30% more CPU time per step.
SD15_UNET: dict[str, Any] = {
    **_UNET_COMMON,
    "adm_in_channels": None,
    "num_res_blocks": [1, 1],
    "channel_mult": [1, 2],
    "transformer_depth": [1, 0],
    "transformer_depth_middle": -1,  # middle block = one res block, no transformer
    "transformer_depth_output": [0, 0, 0, 0],
    "use_linear_in_transformer": False,
    "context_dim": 768,
}

# The SDXL family member with the fewest transformers is Segmind-Vega: detection pins its
# input transformer_depth [0, 0, 1, 1, 2, 2] (three levels of two res blocks) but neither
# the channel multipliers nor the middle / output blocks, so every level stays at 320
# channels and only the input blocks have transformers (about 77M UNet params instead of
# Vega's 745M).  It loads as model_base.SDXL like any SDXL checkpoint.
SDXL_UNET: dict[str, Any] = {
    **_UNET_COMMON,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "num_res_blocks": [2, 2, 2],
    "channel_mult": [1, 1, 1],
    "transformer_depth": [0, 0, 1, 1, 2, 2],
    "transformer_depth_middle": -1,
    "transformer_depth_output": [0] * 9,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
}

# comfy.sd.VAE's default SD1.x / SDXL AutoencoderKL.
SD_VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}

INPAINT_IN_CHANNELS = 9  # 4 noisy latent + 1 mask + 4 masked-image latent
INIT_STD = 0.02
SAVE_DTYPE = "float16"  # half the size and load time; ComfyUI still runs UNet and VAE in fp32 on CPU
FINGERPRINT_KEY = "dreammix_test_spec"  # safetensors metadata entry naming the recipe


@dataclass(frozen=True)
class CheckpointSpec:
    """One checkpoint to write and what ComfyUI must detect it as."""

    unet: dict[str, Any]
    in_channels: int
    model_config: str  # comfy.supported_models class name
    model_base: str  # comfy.model_base class the loaded model must be an instance of
    seed: int

    @property
    def inpaint(self) -> bool:
        return self.in_channels == INPAINT_IN_CHANNELS


SPECS: dict[str, CheckpointSpec] = {
    "tiny_sd15": CheckpointSpec(SD15_UNET, 4, "SD15", "BaseModel", seed=15),
    "tiny_sd15_inpaint": CheckpointSpec(SD15_UNET, INPAINT_IN_CHANNELS, "SD15", "BaseModel", seed=16),
    "tiny_sdxl": CheckpointSpec(SDXL_UNET, 4, "Segmind_Vega", "SDXL", seed=20),
    "tiny_sdxl_inpaint": CheckpointSpec(SDXL_UNET, INPAINT_IN_CHANNELS, "Segmind_Vega", "SDXL", seed=21),
}


def spec_fingerprint(name: str) -> str:
    """Hash of everything that shapes a checkpoint, so a cache notices when the recipe changes."""
    recipe = {
        "spec": dataclasses.asdict(SPECS[name]),
        "vae": SD_VAE_DDCONFIG,
        "init_std": INIT_STD,
        "dtype": SAVE_DTYPE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def is_current(path: Path, name: str) -> bool:
    """True if `path` exists and was written from the current recipe (stdlib only: no torch needed)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        metadata = json.loads(f.read(header_len)).get("__metadata__", {})
    return metadata.get(FINGERPRINT_KEY) == spec_fingerprint(name)


def import_comfy(comfyui: Path) -> None:
    """Make `comfy` importable and force the CPU device before model_management loads."""
    os.chdir(comfyui)
    sys.path.insert(0, str(comfyui))
    from comfy.cli_args import args

    args.cpu = True  # the checkpoints are built on CPU whatever accelerator is present


def init_random(module: torch.nn.Module, seed: int) -> None:
    """Seeded explicit init: ComfyUI's layers are allocated uninitialised (empty memory)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if isinstance(sub, norms):
                    param.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    param.zero_()
                else:
                    param.normal_(0.0, INIT_STD, generator=gen)


def build_state_dict(spec: CheckpointSpec) -> dict[str, torch.Tensor]:
    """UNet + text encoder(s) + VAE in SAVE_DTYPE, keyed the way ComfyUI saves a full checkpoint."""
    import comfy.model_detection
    import comfy.sd
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL

    cpu = torch.device("cpu")
    model_config = comfy.model_detection.model_config_from_unet_config({**spec.unet, "in_channels": spec.in_channels})
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=cpu)
    clip = comfy.sd.CLIP(
        model_config.clip_target(),
        model_options={"dtype": torch.float32, "load_device": cpu, "offload_device": cpu, "initial_device": cpu},
    )
    vae = AutoencoderKL(ddconfig=SD_VAE_DDCONFIG, embed_dim=4)
    for offset, module in enumerate((model.diffusion_model, clip.cond_stage_model, vae)):
        init_random(module, spec.seed * 10 + offset)
    sd = model.state_dict_for_saving(clip.get_sd(), vae.state_dict())
    dtype = getattr(torch, SAVE_DTYPE)
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


class _WarningCollector(logging.Handler):
    """Collects ComfyUI's load-time warnings (e.g. 'unet missing: [...]', 'clip missing')."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def verify(path: Path, spec: CheckpointSpec) -> dict[str, Any]:
    """Load like CheckpointLoaderSimple does and check the detected model family."""
    import comfy.model_base
    import comfy.sd

    collector = _WarningCollector()
    logging.getLogger().addHandler(collector)
    try:
        patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    finally:
        logging.getLogger().removeHandler(collector)
    model = patcher.model
    detected = {
        "model_config": type(model.model_config).__name__,
        "model_base": type(model).__name__,
        "concat_keys": list(model.concat_keys),
        "in_channels": model.model_config.unet_config["in_channels"],
    }
    problems = [m for m in collector.messages if "missing" in m or "unexpected" in m]
    if clip is None or vae is None:
        problems.append("text encoder or VAE not loaded")
    if detected["model_config"] != spec.model_config:
        problems.append(f"detected {detected['model_config']}, expected {spec.model_config}")
    if not isinstance(model, getattr(comfy.model_base, spec.model_base)):
        problems.append(f"{detected['model_base']} is not a model_base.{spec.model_base}")
    expected_concat = ["mask", "masked_image"] if spec.inpaint else []
    if detected["concat_keys"] != expected_concat:
        problems.append(f"concat_keys {detected['concat_keys']}, expected {expected_concat}")
    if problems:
        raise RuntimeError(f"{path.name} does not load as intended: " + "; ".join(problems))
    return detected


def make_checkpoint(name: str, out_dir: Path) -> dict[str, Any]:
    """Build, save, verify, then atomically publish one checkpoint (so a cache never holds a bad file)."""
    import comfy.utils

    spec = SPECS[name]
    final = out_dir / f"{name}.safetensors"
    if is_current(final, name):
        return {"name": name, "path": str(final), "skipped": True}
    started = time.monotonic()
    partial = out_dir / f".{name}.{os.getpid()}.partial.safetensors"  # concurrent runs never collide
    comfy.utils.save_torch_file(
        build_state_dict(spec),
        str(partial),
        metadata={FINGERPRINT_KEY: spec_fingerprint(name), "description": "random weights for tests, not a real model"},
    )
    built = time.monotonic()
    try:
        detected = verify(partial, spec)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    return {
        "name": name,
        "path": str(final),
        "skipped": False,
        "bytes": final.stat().st_size,
        "build_s": round(built - started, 1),
        "verify_s": round(time.monotonic() - built, 1),
        **detected,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("names", nargs="*", help=f"checkpoints to write (default: all of {list(SPECS)})")
    parser.add_argument(
        "--comfyui", type=Path, default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (default: $COMFYUI_PATH)"
    )
    args = parser.parse_args(argv)
    if args.comfyui is None:
        parser.error("--comfyui or COMFYUI_PATH is required")
    unknown = sorted(set(args.names) - set(SPECS))
    if unknown:
        parser.error(f"unknown checkpoint names {unknown}; choose from {list(SPECS)}")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    import_comfy(args.comfyui.resolve())
    for name in args.names or SPECS:
        print(json.dumps(make_checkpoint(name, out_dir)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
