"""The DreamMix training loss (method.md §4): the prediction's MSE weighted by the latent-resolution mask.

The released code multiplies prediction and target by 1.5 inside the (augmented) mask and 0.6
outside before the squared error, so the squared error is weighted 2.25 inside and 0.36 outside.
The target is the model's own: epsilon for the SD UNets, the flow's velocity for the FLUX DiTs
(`flow_velocity`); the weighting is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INSIDE_WEIGHT = 1.5
OUTSIDE_WEIGHT = 0.6


def latent_mask(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Max-pool a (B, 1, H, W) or (B, H, W) pixel mask to the latent's (h, w): a latent cell touching the mask is in."""
    if mask.ndim == 3:
        mask = mask[:, None]
    return F.adaptive_max_pool2d(mask.float(), latent_size)


def weighted_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    inside: float = INSIDE_WEIGHT,
    outside: float = OUTSIDE_WEIGHT,
) -> torch.Tensor:
    """Mean of ((prediction - target) · w)², w = inside on the latent mask, outside elsewhere; computed in fp32.

    `mask` is a latent-resolution mask (B, 1, h, w) (see `latent_mask`), broadcast over channels.
    """
    weight = mask.float() * inside + (1 - mask.float()) * outside
    return F.mse_loss(prediction.float() * weight, target.float() * weight)


def flow_velocity(noise: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """A flow-matching model's training target: its noisy latent x_σ = σ·noise + (1 − σ)·latent moves along
    d x_σ / dσ = noise − latent, the velocity the model predicts."""
    return noise - latent
