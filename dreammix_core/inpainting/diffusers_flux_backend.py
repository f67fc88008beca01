"""A `DenoiseBackend` on a diffusers FLUX transformer with a flow-matching Euler scheduler.

The flow-matching counterpart of `diffusers_backend`, for Python users and for host-free tests of
the flow path: FLUX.1 [dev]-style guidance-distilled models (the guidance is an input of the model,
not a second pass), latents packed 2×2 into tokens as diffusers' FluxPipeline packs them, noising
by flow interpolation x_σ = (1 − σ)·x₀ + σ·ε, and the denoised estimate x₀ = x_σ − σ·v. Known
latent cells are put back at every step, as for the UNet backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .pipeline import Stage, StageResult, seeded_noise


@dataclass
class FluxPrompt:
    """A FLUX prompt: the T5 token embeddings and CLIP-L's pooled vector."""

    tokens: torch.Tensor
    pooled: torch.Tensor


def pack(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H/2 · W/2, 4C): each 2×2 latent patch one token, as FluxPipeline packs it."""
    b, c, h, w = latent.shape
    return latent.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `pack` for a (height, width) latent."""
    b, _, d = tokens.shape
    c = d // 4
    return tokens.view(b, height // 2, width // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, height, width)


def image_ids(height: int, width: int) -> torch.Tensor:
    """Position ids (0, row, column) of the packed tokens of a (height, width) latent."""
    rows = torch.arange(height // 2)[:, None].expand(height // 2, width // 2)
    cols = torch.arange(width // 2)[None, :].expand(height // 2, width // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).to(torch.float32)


def shift_mu(tokens: int, config) -> float:
    """FluxPipeline's resolution-dependent shift: linear in the token count between the config's two anchors."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return tokens * slope + base_shift - slope * base_len


class FluxDiffusersBackend:
    def __init__(self, transformer, vae, scheduler, positive: FluxPrompt, guidance: float = 3.5,
                 local_positive: FluxPrompt | None = None) -> None:  # fmt: skip
        if not hasattr(scheduler, "scale_noise"):
            raise TypeError(f"{type(scheduler).__name__} is not a flow-matching scheduler: use FlowMatchEulerDiscrete.")
        self.transformer, self.vae, self.scheduler = transformer, vae, scheduler
        self.positive, self.local_positive, self.guidance = positive, local_positive, guidance
        self.spatial_factor = self.vae_scale(vae)

    @staticmethod
    def vae_scale(vae) -> int:
        """Pixels per latent cell of the VAE's config (FluxPipeline's vae_scale_factor)."""
        return 2 ** (len(vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels[..., :3].movedim(-1, 1).to(self.vae.device, self.vae.dtype) * 2 - 1
        latent = self.vae.encode(images).latent_dist.mode().to(torch.float32)
        return (latent - (self.vae.config.shift_factor or 0.0)) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        latent = latent / self.vae.config.scaling_factor + (self.vae.config.shift_factor or 0.0)
        images = self.vae.decode(latent.to(self.vae.device, self.vae.dtype)).sample.to(torch.float32)
        return ((images + 1) / 2).clamp(0, 1).movedim(1, -1).cpu()

    def _velocity(self, x: torch.Tensor, sigma: torch.Tensor, prompt) -> torch.Tensor:
        """The model's velocity at `x`; an odd latent side is padded by one repeated row or column for the 2x2
        patches and cropped off again (as ComfyUI pads to the patch size)."""
        rows, cols = x.shape[-2:]
        x = F.pad(x, (0, cols % 2, 0, rows % 2), mode="replicate")
        return self._model_velocity(x, sigma, prompt)[..., :rows, :cols]

    def _model_velocity(self, x: torch.Tensor, sigma: torch.Tensor, prompt: FluxPrompt) -> torch.Tensor:
        """The velocity at `x` (even sides) from the transformer called as FluxPipeline calls it; the one piece a
        flow family's backend replaces."""
        height, width = x.shape[-2:]
        device, dtype = self.transformer.device, self.transformer.dtype
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((x.shape[0],), self.guidance, device=device, dtype=torch.float32)
        out = self.transformer(
            hidden_states=pack(x).to(device, dtype),
            encoder_hidden_states=prompt.tokens.expand(x.shape[0], -1, -1).to(device, dtype),
            pooled_projections=prompt.pooled.expand(x.shape[0], -1).to(device, dtype),
            timestep=sigma.expand(x.shape[0]).to(device, dtype),
            img_ids=image_ids(height, width).to(device),
            txt_ids=torch.zeros(prompt.tokens.shape[1], 3, device=device),
            guidance=guidance,
        ).sample
        return unpack(out.to(torch.float32).cpu(), height, width)

    @torch.no_grad()
    def denoise(self, stage: Stage) -> StageResult:
        known = stage.latent.to(torch.float32)
        height, width = known.shape[-2:]
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        # FluxPipeline's schedule: sigmas 1 … 1/steps, then shifted (by the token count where the shift is dynamic).
        options = {"sigmas": np.linspace(1.0, 1 / stage.steps, stage.steps)}
        if scheduler.config.get("use_dynamic_shifting"):
            options["mu"] = shift_mu(math.ceil(height / 2) * math.ceil(width / 2), scheduler.config)
        scheduler.set_timesteps(**options)
        scheduler.set_begin_index(stage.start)
        timesteps, sigmas = scheduler.timesteps, scheduler.sigmas
        keep = F.max_pool2d(stage.per_item(stage.mask).unsqueeze(1).to(torch.float32), self.spatial_factor)
        noise = stage.noise(lambda items: seeded_noise(items, torch.Generator().manual_seed(stage.seed)))
        prompt = self.local_positive if stage.name == "local" and self.local_positive else self.positive
        x = scheduler.scale_noise(known, timesteps[stage.start : stage.start + 1], noise)
        denoised = known
        for index in range(stage.start, stage.end):
            velocity = self._velocity(x, sigmas[index], prompt)
            estimate = x - sigmas[index] * velocity  # the model's x0 at this step
            step = scheduler.step(velocity, timesteps[index], x).prev_sample
            known_now = (1 - sigmas[index + 1]) * known + sigmas[index + 1] * noise  # the last sigma is 0
            x = keep * step + (1 - keep) * known_now
            denoised = keep * estimate + (1 - keep) * known
        return StageResult(latent=x, denoised=denoised)
