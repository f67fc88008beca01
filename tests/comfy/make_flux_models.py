"""Write tiny random-weight FLUX.1 / FLUX.1 Fill / FLUX.2 diffusion models and VAEs that ComfyUI detects.

No real FLUX weights can be downloaded for the ComfyUI test tier, so this script builds stand-ins from
ComfyUI's own classes (comfy.ldm.flux.model.Flux through model_base.Flux / Flux2, and the VAE's
Encoder / Decoder / AutoencoderKL), initialises every parameter from a seeded generator (ComfyUI
allocates layers uninitialised) and saves them under the key names of the released files:

    OUT_DIR/diffusion_models/tiny_flux1.safetensors       FLUX.1 [dev] layout  -> model_base.Flux (Flux)
    OUT_DIR/diffusion_models/tiny_flux1_fill.safetensors  FLUX.1 Fill layout   -> model_base.Flux (FluxInpaint)
    OUT_DIR/diffusion_models/tiny_flux2.safetensors       FLUX.2 Klein layout  -> model_base.Flux2 (Flux2)
    OUT_DIR/vae/tiny_flux1_vae.safetensors                FLUX.1 ae layout: 16 channels, 8x
    OUT_DIR/vae/tiny_flux2_vae.safetensors                FLUX.2 ae layout: 128 channels, 16x

Detection facts this relies on (ComfyUI's comfy/model_detection.py, supported_models.py, sd.py):

* A DiT is FLUX-like when `double_blocks.0.img_attn.norm.key_norm.scale` (or `.weight`) and `img_in.weight`
  exist; `double_stream_modulation_img.lin.weight` makes it FLUX.2 (global modulation, no biases, patch 1,
  axes_dim [32]*4, theta 2000, out_channels 128), otherwise FLUX.1 (axes_dim [16, 56, 56], patch 2,
  out_channels 16). Read from the weights: hidden_size = img_in rows, in_channels = img_in columns /
  patch**2, context_in_dim = txt_in columns, vec_in_dim = vector_in.in_layer columns (else None),
  guidance_embed = presence of guidance_in.in_layer.weight, depth / depth_single_blocks = block counts,
  num_heads = hidden_size // sum(axes_dim) (= hidden // 128 for both), so 128 is the smallest hidden size.
* supported_models: FluxInpaint = flux + guidance_embed + in_channels 96 (tried before Flux);
  Flux = flux + guidance_embed (shift 1.15); FluxSchnell = flux without guidance (ModelType.FLOW);
  Flux2 = flux2 whatever the rest (shift 2.02, latent_formats.Flux2). The context width is free (768 here);
  model_base.Flux2 left-pads the context to 512 tokens. extra_conds always sends guidance 3.5 (or the cond's
  "guidance"); only a model with guidance_in uses it (FLUX.1 [dev] yes, Klein-style FLUX.2 here no).
* model_base.Flux.concat_cond: img_in channels > 2 * out_channels means Fill: the masked-image latent (16)
  plus the mask folded 8x8 into 64 channels are concatenated to the 16-channel noise: 16 + 16 + 64 = 96.
* comfy.sd.VAE, default AutoencoderKL branch, keyed on `decoder.conv_in.weight`: encoder fixed at ch 128,
  ch_mult [1, 2, 4, 4], 2 res blocks (so it cannot shrink); z_channels = decoder.conv_in columns; decoder ch
  = decoder.conv_in rows // 4 (32 is the least GroupNorm(32) allows). No post_quant_conv: AutoencodingEngine
  (FLUX.1's ae.safetensors). `bn.running_mean` (FLUX.2): 2x2 patchified latent with batch norm, so 32
  z_channels become 128 latent channels at 16x; BFL's FLUX.2 ae keeps quant convs as encoder.quant_conv /
  decoder.post_quant_conv, which ComfyUI renames.

usage: python make_flux_models.py COMFYUI_PATH OUT_DIR [--check] [--benchmark-klein [width|4b]]
Run it with the python that runs ComfyUI. --check loads every file with ComfyUI's own loaders and samples
2 steps on CPU. One JSON line per file (and per check) goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for real inside functions, after import_comfy() set up sys.path
    import torch

HIDDEN_SIZE = 128  # one 128-wide attention head: detection derives num_heads = hidden // 128
HEAD_DIM = 128  # every FLUX head is 128 wide: the q/k norms' scale
CONTEXT_DIM = 768  # CLIP-L width, so a hand-built CLIP-L conditioning drives the model
T5_DIM = 4096  # T5-XXL width, the context real FLUX.1 models take
POOLED_DIM = 768  # FLUX.1 vector_in takes CLIP-L's pooled output
GUIDANCE_EMBED_DIM = 256  # guidance_in / time_in take a 256-wide sinusoidal embedding
INIT_STD = 0.02
SAVE_DTYPE = "bfloat16"  # the released FLUX weights' dtype; ComfyUI casts to fp32 on CPU
MASK_CHANNELS = 8 * 8  # FLUX.1 Fill folds the pixel-space mask 8x8 into latent channels
SIDE = 256  # check image size

# comfy.sd.VAE's default KL autoencoder: everything but z_channels and the decoder width is fixed.
VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
VAE_DECODER_CH = 32  # narrowest decoder: GroupNorm(32 groups) needs ch % 32 == 0


@dataclass(frozen=True)
class DiTSpec:
    """One diffusion model to write and what ComfyUI must detect it as."""

    name: str
    flux2: bool
    in_channels: int  # latent channels img_in takes (noise + any concatenated conditioning)
    patch_size: int
    guidance: bool
    pooled: bool  # FLUX.1 vector_in for CLIP-L's pooled output
    model_config: str  # comfy.supported_models class
    model_base: str  # comfy.model_base class
    vae: str
    seed: int
    context_dim: int = CONTEXT_DIM
    hidden_size: int = HIDDEN_SIZE
    double_blocks: int = 1
    single_blocks: int = 1


@dataclass(frozen=True)
class VAESpec:
    """One VAE to write and the latent layout comfy.sd.VAE must give it."""

    name: str
    z_channels: int
    batch_norm_latent: bool  # FLUX.2: 2x2 patchify + BatchNorm, 4x the channels at 2x the downscale
    latent_channels: int
    downscale: int
    seed: int


_FLUX1: dict[str, Any] = {  # what both FLUX.1 layouts share
    "flux2": False,
    "patch_size": 2,
    "guidance": True,
    "pooled": True,
    "model_base": "Flux",
    "vae": "tiny_flux1_vae",
}
DITS: list[DiTSpec] = [
    DiTSpec("tiny_flux1", in_channels=16, model_config="Flux", seed=101, **_FLUX1),
    DiTSpec("tiny_flux1_fill", in_channels=16 + 16 + MASK_CHANNELS, model_config="FluxInpaint", seed=102, **_FLUX1),
    # FLUX.1's real context width (T5-XXL): CLIP-L conditioning must be refused by name, not fail in torch
    DiTSpec("tiny_flux1_t5", in_channels=16, model_config="Flux", seed=104, context_dim=T5_DIM, **_FLUX1),
    DiTSpec(
        "tiny_flux2",
        flux2=True,
        in_channels=128,  # FLUX.2's 32 VAE channels, already 2x2-patchified by the VAE
        patch_size=1,
        guidance=False,  # Klein (distilled) ships no guidance_in; FLUX.2 [dev] does
        pooled=False,
        model_config="Flux2",
        model_base="Flux2",
        vae="tiny_flux2_vae",
        seed=103,
    ),
]
KLEIN_WIDTH = DiTSpec(
    "bench_flux2_klein4b_width",
    flux2=True,
    in_channels=128,
    patch_size=1,
    guidance=False,
    pooled=False,
    model_config="Flux2",
    model_base="Flux2",
    vae="tiny_flux2_vae",
    seed=105,
    hidden_size=3072,  # FLUX.2 Klein 4B's width: 24 heads of 128, MLP ratio 3
    double_blocks=1,  # of its 5
    single_blocks=2,  # of its 20
)
"""For the benchmarks only (--benchmark-klein; never in the test cache): Klein 4B's block shape, few blocks, CLIP-L-wide
context (its Qwen3 context is 7680), so the block-level cost ratios are Klein's on a machine without its memory."""
KLEIN_4B = replace(KLEIN_WIDTH, name="bench_flux2_klein4b", seed=106, double_blocks=5, single_blocks=20)
"""For benchmarks/gpu_check.sh (--benchmark-klein 4b): Klein 4B's whole DiT (5 double, 20 single blocks, 3.9B
parameters), with the CLIP-L-wide context of the others; 8 GB on disk, 16 GB in fp32."""
KLEIN_BENCHMARKS = {"width": KLEIN_WIDTH, "4b": KLEIN_4B}
VAES: list[VAESpec] = [
    VAESpec("tiny_flux1_vae", 16, False, latent_channels=16, downscale=8, seed=201),
    VAESpec("tiny_flux2_vae", 32, True, latent_channels=128, downscale=16, seed=202),
]


def import_comfy(comfyui: Path) -> None:
    """Make `comfy` importable and run it on CPU: cli_args parses sys.argv when comfy is first imported."""
    os.chdir(comfyui)
    sys.path.insert(0, str(comfyui))
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management  # noqa: F401  (reads the parsed args: CPU device)


def init_random(module: torch.nn.Module, seed: int) -> None:
    """Seeded explicit init: ComfyUI's layers are allocated uninitialised (empty memory)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.RMSNorm)
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if isinstance(sub, norms):
                    param.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    param.zero_()
                else:
                    param.normal_(0.0, INIT_STD, generator=gen)
            if isinstance(sub, torch.nn.BatchNorm2d):  # FLUX.2 latent statistics: identity normalisation
                sub.running_mean.zero_()
                sub.running_var.fill_(1.0)
                sub.num_batches_tracked.zero_()


def release_keys(spec: DiTSpec) -> dict[str, tuple[int, ...]]:
    """The keys (and shapes) of a released file that ComfyUI's detection reads, sized for this spec."""
    p, hidden = spec.patch_size, spec.hidden_size
    keys: dict[str, tuple[int, ...]] = {
        "img_in.weight": (hidden, spec.in_channels * p * p),
        "txt_in.weight": (hidden, spec.context_dim),
    }
    for block in range(spec.double_blocks):
        keys[f"double_blocks.{block}.img_attn.norm.key_norm.scale"] = (HEAD_DIM,)
    for block in range(spec.single_blocks):
        keys[f"single_blocks.{block}.linear2.weight"] = (hidden, hidden + int(hidden * (3.0 if spec.flux2 else 4.0)))
    if spec.flux2:
        keys["double_stream_modulation_img.lin.weight"] = (6 * hidden, hidden)
    if spec.guidance:
        keys["guidance_in.in_layer.weight"] = (hidden, GUIDANCE_EMBED_DIM)
    if spec.pooled:
        keys["vector_in.in_layer.weight"] = (hidden, POOLED_DIM)
    return keys


def to_release_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL's RMSNorm calls its weight `scale`; Flux.process_unet_state_dict maps `_norm.scale` back on load."""
    return {(k[: -len(".weight")] + ".scale" if k.endswith("_norm.weight") else k): v for k, v in sd.items()}


def saveable(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors in SAVE_DTYPE (integer buffers such as num_batches_tracked stay as they are)."""
    import torch

    dtype = getattr(torch, SAVE_DTYPE)
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sorted(sd.items())}


def build_dit(spec: DiTSpec) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Detects a unet_config from release-shaped keys, builds ComfyUI's model for it and returns its weights."""
    import comfy.model_detection
    import torch

    skeleton = {k: torch.empty(shape, device="meta") for k, shape in release_keys(spec).items()}
    unet_config = comfy.model_detection.detect_unet_config(skeleton, "")
    if unet_config["in_channels"] != spec.in_channels or unet_config["patch_size"] != spec.patch_size:
        raise RuntimeError(f"{spec.name}: detection gave {unet_config}, not the intended layout")
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config, skeleton)
    if type(model_config).__name__ != spec.model_config:
        raise RuntimeError(f"{spec.name}: config matches {type(model_config).__name__}, expected {spec.model_config}")
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    init_random(model.diffusion_model, spec.seed)
    sd = to_release_names(model.diffusion_model.state_dict())
    for key, shape in release_keys(spec).items():  # the skeleton really was the layout ComfyUI builds
        if tuple(sd[key].shape) != shape:
            raise RuntimeError(f"{spec.name}: {key} is {tuple(sd[key].shape)}, the skeleton said {shape}")
    return saveable(sd), unet_config


def build_vae(spec: VAESpec) -> dict[str, torch.Tensor]:
    """The KL autoencoder comfy.sd.VAE builds for this latent layout, in the released files' key names."""
    from comfy.ldm.models.autoencoder import AutoencoderKL, AutoencodingEngine

    ddconfig = {**VAE_DDCONFIG, "z_channels": spec.z_channels}
    decoder_ddconfig = {**ddconfig, "ch": VAE_DECODER_CH}
    if spec.batch_norm_latent:
        ddconfig["batch_norm_latent"] = True
        vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=spec.z_channels, decoder_ddconfig=decoder_ddconfig)
    else:
        vae = AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": decoder_ddconfig},
        )
    init_random(vae, spec.seed)
    sd = vae.state_dict()
    if spec.batch_norm_latent:  # BFL's FLUX.2 ae.safetensors: the quant convs live inside encoder / decoder
        sd = {
            ("encoder." + k if k.startswith("quant_conv.") else "decoder." + k if k.startswith("post_quant") else k): v
            for k, v in sd.items()
        }
    return saveable(sd)


class LogCollector(logging.Handler):
    """Collects ComfyUI's load-time complaints (missing / unexpected / leftover keys)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def problems(self) -> list[str]:
        words = ("missing", "unexpected", "leftover", "left over")
        return [m[:300] for m in self.messages if any(w in m.lower() for w in words)]


@contextlib.contextmanager
def collecting_logs() -> Iterator[LogCollector]:
    """Collects root-logger records down to DEBUG (ComfyUI logs leftover VAE keys at DEBUG), then restores it."""
    collector = LogCollector()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(level)


def sha256(path: Path) -> str:
    """Content hash, to show that the fixed seeds give the same bytes on every run."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def write(sd: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Atomic save, so a reader never sees a half-written file."""
    import comfy.utils

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.safetensors")
    comfy.utils.save_torch_file(sd, str(partial), metadata=metadata)
    os.replace(partial, path)


def supported_dits() -> list[DiTSpec]:
    """The layouts this ComfyUI detects at tiny size. FLUX.2 arrived after v0.3.64, whose FLUX.1 detection fixes
    the real sizes (hidden 3072, context 4096) instead of reading them, so it gets no tiny FLUX at all."""
    import comfy.latent_formats
    import comfy.model_detection
    import torch

    supported = []
    for spec in DITS:
        if spec.flux2 and not hasattr(comfy.latent_formats, "Flux2"):
            continue
        skeleton = {k: torch.empty(shape, device="meta") for k, shape in release_keys(spec).items()}
        if comfy.model_detection.detect_unet_config(skeleton, "").get("hidden_size") == spec.hidden_size:
            supported.append(spec)
    return supported


def supported_vaes() -> list[VAESpec]:
    wanted = {spec.vae for spec in supported_dits()}
    return [spec for spec in VAES if spec.name in wanted]


def make_all(out_dir: Path, dits: list[DiTSpec] | None = None) -> None:
    """Builds and writes every file this ComfyUI detects (or `dits`), re-detecting each DiT from what was written."""
    import comfy.model_detection
    import comfy.utils

    description = {"description": "random weights for tests, not a real model"}
    for folder in ("diffusion_models", "vae"):  # present even where none is supported: a search path of the tests
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for spec in supported_dits() if dits is None else dits:
        started = time.monotonic()
        sd, unet_config = build_dit(spec)
        path = out_dir / "diffusion_models" / f"{spec.name}.safetensors"
        write(sd, path, description)
        redetected = comfy.model_detection.detect_unet_config(comfy.utils.load_torch_file(str(path)), "")
        if redetected != unet_config:
            raise RuntimeError(f"{path.name}: re-detected {redetected}, built {unet_config}")
        params = sum(t.numel() for t in sd.values())
        report = {"file": str(path), "bytes": path.stat().st_size, "params": params, "sha256": sha256(path)}
        unet = {k: v for k, v in unet_config.items() if k != "image_model"}
        print(json.dumps({**report, "build_s": round(time.monotonic() - started, 1), "unet_config": unet}), flush=True)
    for vspec in supported_vaes():
        started = time.monotonic()
        sd = build_vae(vspec)
        path = out_dir / "vae" / f"{vspec.name}.safetensors"
        write(sd, path, description)
        params = sum(t.numel() for t in sd.values() if t.is_floating_point())
        report = {"file": str(path), "bytes": path.stat().st_size, "params": params, "sha256": sha256(path)}
        print(json.dumps({**report, "build_s": round(time.monotonic() - started, 1)}), flush=True)


def finite(t: torch.Tensor) -> bool:
    """True when no NaN / inf came out: random weights must still give a usable forward pass."""
    import torch

    return bool(torch.isfinite(t).all())


def check_vae(spec: VAESpec, out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Loads a VAE the way VAELoader does (comfy.sd.VAE on the file's state dict) and checks its layout."""
    import comfy.sd
    import comfy.utils

    with collecting_logs() as collector:
        sd, metadata = comfy.utils.load_torch_file(
            str(out_dir / "vae" / f"{spec.name}.safetensors"), return_metadata=True
        )
        vae = comfy.sd.VAE(sd=sd, metadata=metadata)
        vae.throw_exception_if_invalid()
    facts = {
        "vae": spec.name,
        "vae_class": type(vae.first_stage_model).__name__,
        "latent_channels": vae.latent_channels,
        "spacial_compression_encode": vae.spacial_compression_encode(),
        "batch_norm_latent": getattr(vae.first_stage_model, "bn", None) is not None,
        "vae_dtype": str(vae.vae_dtype),
    }
    problems = collector.problems()
    if problems or (vae.latent_channels, vae.spacial_compression_encode()) != (spec.latent_channels, spec.downscale):
        raise RuntimeError(f"{spec.name} does not load as intended: {facts} {problems}")
    return vae, facts


def check_dit(spec: DiTSpec, out_dir: Path) -> dict[str, Any]:
    """Loads a DiT like UNETLoader, then encodes, samples 2 euler/simple steps and decodes on CPU."""
    import comfy.model_base
    import comfy.sample
    import comfy.sd
    import torch

    import nodes

    report: dict[str, Any] = {"model": spec.name}
    started = time.monotonic()
    with collecting_logs() as collector:
        patcher = comfy.sd.load_diffusion_model(str(out_dir / "diffusion_models" / f"{spec.name}.safetensors"))
    model = patcher.model
    sampling = model.model_sampling
    unet = model.model_config.unet_config
    report.update(
        {
            "load_s": round(time.monotonic() - started, 2),
            "model_base": type(model).__name__,
            "model_config": type(model.model_config).__name__,
            "model_type": model.model_type.name,
            "latent_format": type(model.latent_format).__name__,
            "latent_channels": model.latent_format.latent_channels,
            "spacial_downscale_ratio": model.latent_format.spacial_downscale_ratio,
            "model_sampling": "+".join(b.__name__ for b in type(sampling).__bases__),
            "shift": sampling.shift,
            "unet_config": {k: unet[k] for k in sorted(unet) if k not in ("image_model", "dtype")},
            "dtype": str(model.get_dtype()),
            "load_log_problems": collector.problems(),
        }
    )
    report["guidance_used"] = bool(unet.get("guidance_embed"))  # extra_conds always sends 3.5; only this reads it
    wrong_class = not isinstance(model, getattr(comfy.model_base, spec.model_base))
    if report["model_config"] != spec.model_config or wrong_class or report["load_log_problems"]:
        raise RuntimeError(f"{spec.name} does not load as intended: {report}")

    vae, vae_facts = check_vae(next(v for v in VAES if v.name == spec.vae), out_dir)
    report.update(vae_facts)
    gen = torch.Generator().manual_seed(spec.seed)
    image = torch.rand(1, SIDE, SIDE, 3, generator=gen)
    context, pooled = torch.randn(1, 77, CONTEXT_DIM, generator=gen), torch.randn(1, POOLED_DIM, generator=gen)
    positive = [[context, {"pooled_output": pooled, "guidance": 3.5}]]
    negative = [[torch.zeros(1, 77, CONTEXT_DIM), {"pooled_output": torch.zeros(1, POOLED_DIM), "guidance": 3.5}]]

    t0 = time.monotonic()
    noise_mask = None
    if spec.in_channels > 2 * unet["out_channels"]:  # Fill: ComfyUI's own InpaintModelConditioning node
        mask = torch.zeros(1, SIDE, SIDE)
        mask[:, SIDE // 4 : 3 * SIDE // 4, SIDE // 4 : 3 * SIDE // 4] = 1.0
        positive, negative, latent = nodes.InpaintModelConditioning().encode(positive, negative, image, vae, mask)
        latent_image, noise_mask = latent["samples"], latent["noise_mask"]
        report["conditioning_keys"] = sorted(positive[0][1])
    else:
        latent_image = vae.encode(image)
    report["encode_s"] = round(time.monotonic() - t0, 2)
    report["latent_shape"] = list(latent_image.shape)

    calls: list[dict[str, Any]] = []

    def unet_wrapper(apply_model: Any, args: dict[str, Any]) -> torch.Tensor:
        """Records what the model really receives (c_concat, context, guidance) and how long one call takes."""
        call_started = time.monotonic()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        c = args["c"]
        calls.append(
            {
                "s": round(time.monotonic() - call_started, 3),
                "input": list(args["input"].shape),
                "c_concat": list(c["c_concat"].shape) if c.get("c_concat") is not None else None,
                "c_crossattn": list(c["c_crossattn"].shape),
                "guidance": c["guidance"].tolist() if c.get("guidance") is not None else None,
            }
        )
        return out

    patcher = patcher.clone()
    patcher.set_model_unet_function_wrapper(unet_wrapper)
    step_times: list[float] = []
    last = [time.monotonic()]

    def on_step(step: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
        now = time.monotonic()
        step_times.append(round(now - last[0], 3))
        last[0] = now

    noise = comfy.sample.prepare_noise(latent_image, spec.seed)
    last[0] = time.monotonic()
    samples = comfy.sample.sample(
        patcher, noise, 2, 1.0, "euler", "simple", positive, negative, latent_image,
        denoise=1.0, noise_mask=noise_mask, callback=on_step, disable_pbar=True, seed=spec.seed,
    )  # fmt: skip
    t1 = time.monotonic()
    decoded = vae.decode(samples)
    report.update(
        {
            "step_s": step_times,
            "model_calls": calls,
            "sample_shape": list(samples.shape),
            "sample_finite": finite(samples),
            "decode_s": round(time.monotonic() - t1, 2),
            "decoded_shape": list(decoded.shape),
            "decoded_finite": finite(decoded),
            "total_s": round(time.monotonic() - started, 2),
        }
    )
    expected_concat = spec.in_channels - unet["out_channels"]
    concat = calls[0]["c_concat"] if calls else None
    if expected_concat and (concat is None or concat[1] != expected_concat):
        raise RuntimeError(f"{spec.name}: c_concat {concat}, expected {expected_concat} channels")
    if not (report["sample_finite"] and report["decoded_finite"]):
        raise RuntimeError(f"{spec.name}: non-finite output")
    return report


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("comfyui", type=Path, help="ComfyUI checkout")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--check", action="store_true", help="load each model with ComfyUI's loaders and sample")
    parser.add_argument(
        "--benchmark-klein",
        nargs="?",
        const="width",
        choices=sorted(KLEIN_BENCHMARKS),
        help=f"write only a benchmark DiT and the test VAEs: width (default) = {KLEIN_WIDTH.name}, about 1 GB; "
        f"4b = {KLEIN_4B.name}, about 8 GB",
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir.resolve()  # before import_comfy changes the working directory
    import_comfy(args.comfyui.resolve())
    make_all(out_dir, [KLEIN_BENCHMARKS[args.benchmark_klein]] if args.benchmark_klein else None)
    if args.benchmark_klein:
        return
    if args.check:
        for spec in supported_dits():
            if spec.context_dim == CONTEXT_DIM:  # the check drives each model with CLIP-L-wide conditioning
                print(json.dumps(check_dit(spec, out_dir)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
