"""A `DenoiseBackend` on diffusers' Z-Image transformer (Z-Image and Z-Image Turbo, a single-stream DiT).

The flow loop and the VAE are FLUX's (`diffusers_flux_backend`: FLUX.1's ae, flow-matching Euler with the token-count
shift, ZImagePipeline's sigmas being FluxPipeline's); what differs is how ZImagePipeline calls the model: a list of
(C, 1, H, W) latents and a list of prompt embeddings, the model's time running the other way (1 − σ, from
ZImagePipeline's (1000 − t) / 1000), and its output the negative of the flow velocity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .diffusers_flux_backend import FluxDiffusersBackend


@dataclass
class ZImagePrompt:
    """A Z-Image prompt as ZImagePipeline.encode_prompt gives one: the (T, D) embeddings of its real tokens."""

    tokens: torch.Tensor


class ZImageDiffusersBackend(FluxDiffusersBackend):
    def __init__(self, transformer, vae, scheduler, positive: ZImagePrompt,
                 local_positive: ZImagePrompt | None = None) -> None:  # fmt: skip
        super().__init__(transformer, vae, scheduler, positive, guidance=0.0, local_positive=local_positive)

    def _model_velocity(self, x: torch.Tensor, sigma: torch.Tensor, prompt: ZImagePrompt) -> torch.Tensor:
        """The flow velocity at `x` from the transformer called as ZImagePipeline calls it."""
        device, dtype = self.transformer.device, self.transformer.dtype
        out = self.transformer(
            list(x.to(device, dtype).unsqueeze(2).unbind(0)),
            (1 - sigma).expand(x.shape[0]).to(device, dtype),
            [prompt.tokens.to(device, dtype)] * x.shape[0],
            return_dict=False,
        )[0]
        return -torch.stack([item.to(torch.float32) for item in out]).squeeze(2).cpu()
