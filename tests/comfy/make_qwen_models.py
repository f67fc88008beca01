"""Write tiny random-weight Qwen-Image and Z-Image diffusion models, the Wan 2.1 VAE and a Qwen2.5-VL text encoder.

The companion of make_flux_models.py (its helpers, seeded initialisation and file writing): stand-ins built from
ComfyUI's own classes, saved under the released files' key names.

    OUT_DIR/diffusion_models/tiny_qwen_image.safetensors  Qwen-Image layout -> supported_models.QwenImage
    OUT_DIR/diffusion_models/tiny_z_image.safetensors     Z-Image layout    -> supported_models.ZImage
    OUT_DIR/vae/tiny_wan21_vae.safetensors                Wan 2.1 VAE (Qwen-Image's): 16 channels, 8x, 5-D latents
    OUT_DIR/text_encoders/tiny_qwen25_7b.safetensors      Qwen2.5-VL 7B layout, one layer, text only

Z-Image's VAE is FLUX.1's ae: make_flux_models.py's tiny_flux1_vae.

Detection facts this relies on (ComfyUI 0.33.0: comfy/model_detection.py detect_unet_config, supported_models.py,
model_base.py, sd.py VAE.__init__ and detect_te_model):

* Qwen-Image: `txt_norm.weight` present. Read from the weights: in_channels = img_in columns (64 = 16 channels,
  2x2 patch) and the block count; the rest is QwenImageTransformer2DModel's defaults: hidden 3072 (24 heads of
  128), context 3584 (Qwen2.5-VL 7B's width). So only the depth shrinks: one block, about 0.4 B parameters.
  ModelType.FLUX (ModelSamplingFlux, shift 1.15), latent_formats.Wan21 (16 channels, 3 latent dimensions). Edit
  variants are the same class; the reference image reaches the model as conditioning "reference_latents".
* Z-Image: `cap_embedder.1.weight` and `noise_refiner.0.attention.k_norm.weight` present; hidden = cap_embedder.1
  rows (only 3840 is Z-Image: 30 heads of 128), context width = its columns (free: 768 here, so CLIP-L
  conditioning from the tiny SD1.5 checkpoint drives it), the layer count. The 2 noise- and 2 context-refiner
  blocks are fixed: one layer is five blocks at 3840, about 0.9 B parameters. ModelType.FLOW
  (ModelSamplingDiscreteFlow, shift 3), latent_formats.Flux (FLUX.1's ae).
* Wan 2.1 VAE: `decoder.middle.0.residual.0.gamma` present, no Wan 2.2 key; its width = decoder.head.0.gamma's
  length (96 released; RMS norms, so any width builds). VAE.encode gives [B, 16, 1, H/8, W/8].
* Qwen2.5-VL 7B text encoder: `model.layers.0.self_attn.k_proj.bias` 512 long (4 key-value heads of 128), hidden
  3584 (the DiT's context). The loader builds the 28-layer config whatever the file holds, so ComfyUI's CLIP
  loaders cannot load a small one; comfy.sd.load_text_encoder_state_dicts takes the config through
  model_options["qwen25_7b_model_config"], which the test node DreamMixTestTextEncoderLoader passes from this
  file's metadata. The 152k-token embedding cannot shrink (0.55 B parameters); the vision tower is left out
  (text prompts only).

usage: python make_qwen_models.py COMFYUI_PATH OUT_DIR
Run it with the python that runs ComfyUI; one JSON line per file goes to stdout. A family this ComfyUI does not
detect (Z-Image before v0.3.7x) gets no file.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_flux_models as flux  # noqa: E402

if TYPE_CHECKING:
    import torch

LATENT_CHANNELS = 16
QWEN_HIDDEN, QWEN_CONTEXT, QWEN_PATCH = 3072, 3584, 2
Z_DIM, Z_HEAD_DIM, Z_CONTEXT, Z_REFINERS = 3840, 128, 768, 2
WAN_VAE_DIM = 8
TEXT_ENCODER_CONFIG = {"num_hidden_layers": 1, "intermediate_size": 256, "num_attention_heads": 4}
"""Qwen2.5-VL 7B shrunk to one layer: 4 heads (the key-value heads detection needs) of 3584 / 4."""
CONFIG_METADATA = "dreammix_test_config"
DESCRIPTION = {"description": "random weights for tests, not a real model"}


@dataclass(frozen=True)
class DiTSpec:
    name: str
    model_config: str
    seed: int


QWEN_IMAGE = DiTSpec("tiny_qwen_image", "QwenImage", 301)
Z_IMAGE = DiTSpec("tiny_z_image", "ZImage", 302)


def release_keys(spec: DiTSpec) -> dict[str, tuple[int, ...]]:
    """The keys (and shapes) of a released file that ComfyUI's detection reads, for one block."""
    if spec is QWEN_IMAGE:
        return {
            "txt_norm.weight": (QWEN_CONTEXT,),
            "img_in.weight": (QWEN_HIDDEN, LATENT_CHANNELS * QWEN_PATCH**2),
            "txt_in.weight": (QWEN_HIDDEN, QWEN_CONTEXT),
            "proj_out.weight": (LATENT_CHANNELS * QWEN_PATCH**2, QWEN_HIDDEN),
            "transformer_blocks.0.attn.to_q.weight": (QWEN_HIDDEN, QWEN_HIDDEN),
        }
    keys = {
        "cap_embedder.0.weight": (Z_CONTEXT,),
        "cap_embedder.1.weight": (Z_DIM, Z_CONTEXT),
        "cap_pad_token": (1, Z_DIM),
        "x_pad_token": (1, Z_DIM),
        "x_embedder.weight": (Z_DIM, LATENT_CHANNELS * 2 * 2),
        "layers.0.attention.qkv.weight": (3 * Z_DIM, Z_DIM),
    }
    for block in range(Z_REFINERS):
        keys[f"noise_refiner.{block}.attention.k_norm.weight"] = (Z_HEAD_DIM,)
        keys[f"context_refiner.{block}.attention.k_norm.weight"] = (Z_HEAD_DIM,)
    return keys


def init_random(module: torch.nn.Module, seed: int) -> None:
    """make_flux_models.init_random, plus the Wan VAE's RMS norms, whose scale is a bare `gamma` parameter."""
    import torch

    flux.init_random(module, seed)
    with torch.no_grad():
        for sub in module.modules():
            if type(sub).__name__ == "RMS_norm":
                sub.gamma.fill_(1.0)
                if sub.bias is not None:
                    sub.bias.zero_()


def build_dit(spec: DiTSpec) -> dict[str, torch.Tensor] | None:
    """The DiT's state dict, or None where this ComfyUI detects the skeleton as another model (or none)."""
    import comfy.model_detection
    import torch

    skeleton = {key: torch.empty(shape, device="meta") for key, shape in release_keys(spec).items()}
    unet_config = comfy.model_detection.detect_unet_config(skeleton, "")
    model_config = unet_config and comfy.model_detection.model_config_from_unet_config(unet_config, skeleton)
    if type(model_config).__name__ != spec.model_config:
        return None
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    init_random(model.diffusion_model, spec.seed)
    return flux.saveable(model.diffusion_model.state_dict())  # ComfyUI's names are the released ones


def build_wan_vae() -> dict[str, torch.Tensor]:
    """The WanVAE comfy.sd.VAE builds for a Wan 2.1 file (dim_mult, res blocks and z_dim fixed there)."""
    import comfy.ldm.wan.vae

    vae = comfy.ldm.wan.vae.WanVAE(
        dim=WAN_VAE_DIM, z_dim=LATENT_CHANNELS, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
        temperal_downsample=[False, True, True], image_channels=3, conv_out_channels=3, dropout=0.0,
    )  # fmt: skip
    init_random(vae, 401)
    return flux.saveable(vae.state_dict())


def build_text_encoder() -> dict[str, torch.Tensor]:
    import comfy.ops
    import comfy.text_encoders.llama
    import torch

    config = comfy.text_encoders.llama.Qwen25_7BVLI_Config(**TEXT_ENCODER_CONFIG)
    model = comfy.text_encoders.llama.Llama2_(
        config, device="cpu", dtype=torch.float32, ops=comfy.ops.disable_weight_init
    )
    init_random(model, 502)
    return flux.saveable({f"model.{key}": value for key, value in model.state_dict().items()})


def report(path: Path, sd: dict[str, torch.Tensor], started: float) -> dict[str, Any]:
    params = sum(tensor.numel() for tensor in sd.values() if tensor.is_floating_point())
    return {"file": str(path), "bytes": path.stat().st_size, "params": params, "s": round(time.monotonic() - started)}


def make_all(out_dir: Path) -> None:
    builds = [
        *(("diffusion_models", spec.name, lambda spec=spec: build_dit(spec), {}) for spec in (QWEN_IMAGE, Z_IMAGE)),
        ("vae", "tiny_wan21_vae", build_wan_vae, {}),
        ("text_encoders", "tiny_qwen25_7b", build_text_encoder, {CONFIG_METADATA: json.dumps(TEXT_ENCODER_CONFIG)}),
    ]
    for folder, name, build, metadata in builds:
        started = time.monotonic()
        sd = build()
        if sd is None:
            print(json.dumps({"file": name, "skipped": "this ComfyUI does not detect it"}), flush=True)
            continue
        path = out_dir / folder / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        flux.write(sd, path, {**DESCRIPTION, **metadata})
        print(json.dumps(report(path, sd, started)), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.rsplit("usage: ", 1)[1])
    comfyui, out_dir = (Path(arg).resolve() for arg in sys.argv[1:])
    flux.import_comfy(comfyui)  # replaces sys.argv with ComfyUI's options
    make_all(out_dir)
