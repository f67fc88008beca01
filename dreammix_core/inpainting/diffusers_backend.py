"""A `DenoiseBackend` on diffusers components, for Python users and for host-free tests.

It drives a diffusers scheduler of the Euler family (one that keeps `sigmas`, supports
`set_begin_index` and returns `pred_original_sample`) over a `UNet2DConditionModel`, with
classifier-free guidance, SDXL size conditioning matching each stage's image, and the
9-channel inpainting input when the UNet has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .pipeline import Stage, StageResult, seeded_noise


@dataclass
class PromptEmbeddings:
    """Text conditioning of one prompt; `pooled` only for SDXL-style UNets."""

    tokens: torch.Tensor
    pooled: torch.Tensor | None = None


def encode_prompt(pipe, text: str) -> PromptEmbeddings:
    """One prompt through an SD or SDXL pipeline's own text encoders (SDXL's also give the pooled vector)."""
    out = pipe.encode_prompt(text, device=pipe.unet.device, num_images_per_prompt=1, do_classifier_free_guidance=False)
    return PromptEmbeddings(out[0], out[2] if len(out) == 4 else None)


@torch.no_grad()
def vae_encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) pixels in [0, 1] → the scaled fp32 latent the UNet works on (the distribution's mode)."""
    images = pixels[..., :3].movedim(-1, 1).to(vae.device, vae.dtype) * 2 - 1
    latent = vae.encode(images).latent_dist.mode()
    return (latent * vae.config.scaling_factor).to(torch.float32)


def size_conditioning(height: int, width: int) -> list[int]:
    """SDXL's time ids for an image generated whole at this size: original size, crop origin (0, 0), target size."""
    return [height, width, 0, 0, height, width]


class DiffusersBackend:
    def __init__(
        self,
        unet,
        vae,
        scheduler,
        positive: PromptEmbeddings,
        negative: PromptEmbeddings,
        guidance_scale: float = 4.0,
        local_positive: PromptEmbeddings | None = None,
    ) -> None:
        for name in ("sigmas", "set_begin_index"):
            if not hasattr(scheduler, name):
                raise TypeError(f"{type(scheduler).__name__} lacks `{name}`: use an Euler-family scheduler.")
        self.unet, self.vae, self.scheduler = unet, vae, scheduler
        self.positive, self.negative, self.local_positive = positive, negative, local_positive
        self.guidance_scale = guidance_scale
        self.spatial_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.inpainting = unet.config.in_channels == 9

    @classmethod
    def from_pipeline(
        cls, pipe, prompt: str, negative_prompt: str = "", guidance_scale: float = 4.0, local_prompt: str | None = None
    ) -> "DiffusersBackend":
        """Encodes the prompts with the pipeline's own text encoders (SD or SDXL pipelines)."""
        local = encode_prompt(pipe, local_prompt) if local_prompt is not None else None
        positive, negative = encode_prompt(pipe, prompt), encode_prompt(pipe, negative_prompt)
        return cls(pipe.unet, pipe.vae, pipe.scheduler, positive, negative, guidance_scale, local)

    @property
    def _dtype(self) -> torch.dtype:
        return self.unet.dtype

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return vae_encode(self.vae, pixels)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        latent = latent.to(self.vae.device, self.vae.dtype) / self.vae.config.scaling_factor
        images = self.vae.decode(latent).sample.to(torch.float32)
        return ((images + 1) / 2).clamp(0, 1).movedim(1, -1).cpu()

    def _conditioning(self, stage: Stage, height: int, width: int, batch: int) -> tuple[torch.Tensor, dict]:
        """The negative then the positive conditioning, each repeated for a batch of `batch` latents."""
        positive = self.local_positive if stage.name == "local" and self.local_positive else self.positive
        device, dtype = self.unet.device, self._dtype
        tokens = torch.cat([self.negative.tokens.expand(batch, -1, -1), positive.tokens.expand(batch, -1, -1)])
        added = {}
        if self.unet.config.addition_embed_type == "text_time":
            time_ids = torch.tensor([size_conditioning(height, width)] * 2 * batch, device=device, dtype=dtype)
            pooled = torch.cat([self.negative.pooled.expand(batch, -1), positive.pooled.expand(batch, -1)])
            added = {"text_embeds": pooled.to(device, dtype), "time_ids": time_ids}
        return tokens.to(device, dtype), added

    def _latent_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A latent cell is regenerated when any of its pixels is masked."""
        return F.max_pool2d(mask.unsqueeze(1).to(torch.float32), self.spatial_factor)

    @torch.no_grad()
    def denoise(self, stage: Stage) -> StageResult:
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(stage.steps)
        scheduler.set_begin_index(stage.start)
        timesteps = scheduler.timesteps
        known = stage.latent.to(torch.float32)
        keep = self._latent_mask(stage.per_item(stage.mask))
        generator = torch.Generator().manual_seed(stage.seed)
        noise = stage.noise(lambda items: seeded_noise(items, generator))
        x = scheduler.add_noise(known, noise, timesteps[stage.start : stage.start + 1])
        denoised = known
        batch = known.shape[0]
        tokens, added = self._conditioning(stage, *stage.pixels.shape[1:3], batch)
        extra = None
        if self.inpainting:
            masked_latent = self.encode(stage.masked_pixels())  # one per image: a crop shared by variations is one
            extra = torch.cat([keep, stage.per_item(masked_latent)], dim=1)
        for index in range(stage.start, stage.end):
            t = timesteps[index]
            model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
            if extra is not None:
                model_in = torch.cat([model_in, torch.cat([extra, extra])], dim=1)
            eps = (
                self.unet(
                    model_in.to(self.unet.device, self._dtype),
                    t,
                    encoder_hidden_states=tokens,
                    added_cond_kwargs=added or None,
                )
                .sample.to(torch.float32)
                .cpu()
            )
            uncond, cond = eps.chunk(2)
            out = scheduler.step(uncond + self.guidance_scale * (cond - uncond), t, x, generator=generator)
            known_now = (
                scheduler.add_noise(known, noise, timesteps[index + 1 : index + 2])
                if index + 1 < stage.steps
                else known
            )
            x = keep * out.prev_sample + (1 - keep) * known_now
            denoised = keep * out.pred_original_sample + (1 - keep) * known
        return StageResult(latent=x, denoised=denoised)
