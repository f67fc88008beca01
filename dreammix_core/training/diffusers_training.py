"""Subject LoRA training (method.md §4) on diffusers components with a peft LoRA: no ComfyUI needed.

It is the ComfyUI node's training with diffusers as the host: the same training copies
(`training_data.expand`), mixing, loss, loop and resumable checkpoints (`training_loop.train`), and the
same LoRA file (`lora_file`), which ComfyUI's LoRA loaders read. What the host supplies differs: the
LoRA layers are peft's (`init_lora_weights="gaussian"` is the recipe's init: up = 0, down ~ N(0, 1/rank)),
the noisy latent is the UNet's own training-time noising (`DDPMScheduler.add_noise` on the pipeline's
beta schedule), and an inpainting UNet (9 input channels) gets the latent mask and the masked image's
latent after the noisy latent, as `DiffusersBackend` gives them at inference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from diffusers import DDPMScheduler

from ..errors import DreamMixInputError
from ..families import family_name
from ..inpainting.diffusers_backend import encode_prompt, size_conditioning, vae_encode
from .data import (
    REGULAR_COPIES,
    REGULAR_PROBABILITY,
    SUBJECT_COPIES,
    MixSampler,
    Photo,
    expand,
    masked_image,
)
from .loop import (
    Example,
    LoopSettings,
    TrainingResult,
    run_fingerprint,
    train,
    training_blocks,
    transformer_blocks,
)
from .lora_file import TrainingRecord, checkpoint_folder, refuse_existing, save_lora
from .lora_targets import KV_OUT, UNET_TARGETS
from .loss import latent_mask


@dataclass(frozen=True)
class LoraRecipe:
    """The LoRA and its training set; defaults are method.md §4's."""

    rank: int = 4
    alpha: float = 4.0
    targets: str = KV_OUT
    """One of `lora_targets.RECIPES`."""
    resolution: int = 0
    """Side of the square training crops; 0: the UNet's native size (512 for SD1.5, 1024 for SDXL)."""
    subject_copies: int = SUBJECT_COPIES
    regular_copies: int = REGULAR_COPIES
    regular_probability: float = REGULAR_PROBABILITY


def add_lora(unet, rank: int, alpha: float, targets: str, seed: int) -> dict[str, torch.nn.Parameter]:
    """Freeze the UNet and give it a peft LoRA on the `targets` projections; returns the trainable parameters.

    The initial down weights are drawn from `seed` (peft draws from torch's global generator; it is restored).
    """
    from peft import LoraConfig  # imported here: only this training path needs peft

    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=".*" + UNET_TARGETS[targets]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(config)
    return {name: param for name, param in unet.named_parameters() if param.requires_grad}


def lora_pairs(unet) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{diffusers module name: (up, down)} of the UNet's peft LoRA (peft's lora_B is up, lora_A down)."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet)
    modules = sorted(key.removesuffix(".lora_A.weight") for key in state if key.endswith(".lora_A.weight"))
    return {module: (state[f"{module}.lora_B.weight"], state[f"{module}.lora_A.weight"]) for module in modules}


def train_subject_lora(
    pipe,
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    instance_prompt: str,
    lora_path: str,
    settings: LoopSettings = LoopSettings(),
    recipe: LoraRecipe = LoraRecipe(),
    regular: Sequence[tuple[str, torch.Tensor, torch.Tensor]] = (),
    recompute: bool = False,
    autocast_dtype: torch.dtype | None = None,
    check_interrupt: Callable[[], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainingResult:
    """Train a subject LoRA into `pipe.unet` (it keeps the adapter) and write it to `lora_path`.

    `images` are (H, W, 3) floats in [0, 1] with (H, W) object `masks`; `regular` holds (prompt, image, mask)
    of the regular data. Checkpoints go to `<lora_path without .safetensors>.checkpoints/`, and a run started
    again with the same inputs resumes from the latest one. `recompute` turns on gradient checkpointing;
    `autocast_dtype` (e.g. torch.bfloat16 on a GPU) runs the UNet under autocast. An existing `lora_path` is
    refused before any work.
    """
    refuse_existing(lora_path)
    unet, vae = pipe.unet, pipe.vae
    noising = DDPMScheduler.from_config(pipe.scheduler.config)
    if noising.config.prediction_type != "epsilon":
        raise DreamMixInputError(
            f"This UNet predicts {noising.config.prediction_type}; the DreamMix loss is on epsilon (SD1.5, SDXL)."
        )
    if len(images) != len(masks):
        raise DreamMixInputError(f"{len(images)} subject photos but {len(masks)} masks: give one mask per photo.")
    spatial = 2 ** (len(vae.config.block_out_channels) - 1)
    side = recipe.resolution or unet.config.sample_size * spatial

    prompts = [instance_prompt.strip()] + list(dict.fromkeys(p.strip() for p, _, _ in regular))
    subject = [Photo(image.float(), mask.float(), 0) for image, mask in zip(images, masks)]
    regular_photos = [Photo(image.float(), mask.float(), prompts.index(p.strip())) for p, image, mask in regular]
    copies = expand(subject, regular_photos, side, settings.seed, recipe.subject_copies, recipe.regular_copies)
    settings = replace(settings, num_timesteps=noising.config.num_train_timesteps)
    run_id = run_fingerprint(
        settings, copies, prompts, side, rank=recipe.rank, alpha=recipe.alpha, targets=recipe.targets,
        copy_counts=(recipe.subject_copies, recipe.regular_copies), regular_probability=recipe.regular_probability,
    )  # fmt: skip

    inpainting = unet.config.in_channels == 9
    with torch.no_grad():
        embeddings = [encode_prompt(pipe, prompt) for prompt in prompts]
        latents = [vae_encode(vae, copy.image.movedim(0, -1)[None]) for copy in copies]
        masks_latent = [latent_mask(copy.mask[None], latent.shape[-2:]) for copy, latent in zip(copies, latents)]
        extras = [
            torch.cat([mask, vae_encode(vae, masked_image(copy.image, copy.mask).movedim(0, -1)[None])], dim=1)
            for copy, mask in zip(copies, masks_latent)
        ] if inpainting else []  # fmt: skip
    examples = [Example(tuple(latent.shape[1:]), mask[0]) for latent, mask in zip(latents, masks_latent)]
    subject_count = sum(not c.regular for c in copies)
    sampler = MixSampler(subject_count, len(copies) - subject_count, recipe.regular_probability)

    params = add_lora(unet, recipe.rank, recipe.alpha, recipe.targets, settings.seed)
    device, dtype = unet.device, unet.dtype
    sdxl = unet.config.addition_embed_type == "text_time"
    time_ids = torch.tensor([size_conditioning(side, side)], device=device, dtype=dtype)

    def predict_eps(index: int, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.tensor([timestep], device=device)
        x_t = noising.add_noise(latents[index].to(device), noise.to(device), t)
        model_in = torch.cat([x_t, extras[index].to(device)], dim=1) if inpainting else x_t
        prompt = embeddings[copies[index].prompt]
        added = {"text_embeds": prompt.pooled.to(device, dtype), "time_ids": time_ids} if sdxl else None
        autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with autocast:
            out = unet(
                model_in.to(dtype), t, encoder_hidden_states=prompt.tokens.to(device, dtype), added_cond_kwargs=added
            )
        return out.sample.float(), noise.to(device)

    with torch.enable_grad(), training_blocks(transformer_blocks(unet), recompute):
        result = train(
            params,
            examples,
            sampler,
            predict_eps,
            settings,
            run_id=run_id,
            checkpoint_folder=checkpoint_folder(lora_path),
            check_interrupt=check_interrupt,
            on_step=on_step,
        )
    unet.requires_grad_(False)
    family = family_name("SDXL" if sdxl else "SD15", unet.config.cross_attention_dim)
    record = TrainingRecord(
        instance_prompt, result.step, recipe.rank, recipe.alpha, settings.seed, side, recipe.targets, inpainting, family
    )
    save_lora(lora_path, lora_pairs(unet), record)
    return result
