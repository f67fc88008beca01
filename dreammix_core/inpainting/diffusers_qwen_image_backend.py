"""A `DenoiseBackend` on diffusers' Qwen-Image transformer (Qwen-Image and its Edit models' MMDiT) and its VAE.

The flow loop is FLUX's (`diffusers_flux_backend`: flow-matching Euler, FluxPipeline's sigmas with the token-count
shift, known latent cells put back at every step); what differs is what QwenImagePipeline does around the model:
no guidance input and no pooled vector, the prompt's token mask passed with its tokens, the latent's shape as
`img_shapes`, and a video VAE (Wan 2.1's layout) whose 5-D latents of one frame are normalised per channel by the
config's `latents_mean` and `latents_std`. Latents here are 4-D (the frame dropped), as the pipeline core takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .diffusers_flux_backend import FluxDiffusersBackend, pack, unpack


@dataclass
class QwenImagePrompt:
    """A Qwen-Image prompt as QwenImagePipeline.encode_prompt gives it: the token embeddings and their mask (None
    when every token counts)."""

    tokens: torch.Tensor
    mask: torch.Tensor | None = None


class QwenImageDiffusersBackend(FluxDiffusersBackend):
    def __init__(self, transformer, vae, scheduler, positive: QwenImagePrompt,
                 local_positive: QwenImagePrompt | None = None) -> None:  # fmt: skip
        super().__init__(transformer, vae, scheduler, positive, guidance=0.0, local_positive=local_positive)

    @staticmethod
    def vae_scale(vae) -> int:
        """QwenImagePipeline's vae_scale_factor: one spatial halving per entry of temperal_downsample."""
        return 2 ** len(vae.config.temperal_downsample)

    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE's latent channels, shaped for (B, C, H, W) latents."""
        config = self.vae.config
        return (torch.tensor(config.latents_mean).view(1, -1, 1, 1), torch.tensor(config.latents_std).view(1, -1, 1, 1))

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels[..., :3].movedim(-1, 1).unsqueeze(2).to(self.vae.device, self.vae.dtype) * 2 - 1
        latent = self.vae.encode(images).latent_dist.mode()[:, :, 0].to(torch.float32).cpu()
        mean, std = self._normalisation()
        return (latent - mean) / std

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._normalisation()
        latent = (latent.cpu() * std + mean).unsqueeze(2)
        images = self.vae.decode(latent.to(self.vae.device, self.vae.dtype)).sample[:, :, 0].to(torch.float32)
        return ((images + 1) / 2).clamp(0, 1).movedim(1, -1).cpu()

    def _model_velocity(self, x: torch.Tensor, sigma: torch.Tensor, prompt: QwenImagePrompt) -> torch.Tensor:
        """The transformer's velocity at `x`, called as QwenImagePipeline calls it (timestep = σ)."""
        batch, height, width = x.shape[0], *x.shape[-2:]
        device, dtype = self.transformer.device, self.transformer.dtype
        out = self.transformer(
            hidden_states=pack(x).to(device, dtype),
            encoder_hidden_states=prompt.tokens.expand(batch, -1, -1).to(device, dtype),
            encoder_hidden_states_mask=None if prompt.mask is None else prompt.mask.expand(batch, -1).to(device),
            timestep=sigma.expand(batch).to(device, dtype),
            img_shapes=[[(1, height // 2, width // 2)]] * batch,
            return_dict=False,
        )[0]
        return unpack(out.to(torch.float32).cpu(), height, width)
