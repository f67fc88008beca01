"""Feathered paste of the local result and the final composite onto the original image."""

import torch
import torch.nn.functional as F

from ..masks import binarize
from .region import CropRegion, resize_image

FEATHER = 32
"""Width in pixels of the linear ramp outside the mask (released code)."""


def feather_mask(mask: torch.Tensor, feather: int = FEATHER) -> torch.Tensor:
    """1 inside the binary mask (B, H, W), falling linearly to 0 over `feather` pixels outside it.

    The distance is the chessboard distance, built from `feather` 3x3 dilations, so pixels
    `feather` or more away are exactly 0 and the original comes back there bit for bit.
    """
    inside = binarize(mask).unsqueeze(1)
    if feather <= 0:
        return inside.squeeze(1)
    grown, total = inside, inside.clone()
    for _ in range(feather - 1):
        grown = F.max_pool2d(grown, kernel_size=3, stride=1, padding=1)
        total += grown
    return (total / feather).squeeze(1)


def blend(base: torch.Tensor, top: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """alpha·top + (1−alpha)·base for images (B, H, W, C); exactly `base` where alpha is 0."""
    alpha = alpha.unsqueeze(-1).to(base.dtype)
    mixed = alpha * top.to(base.dtype) + (1 - alpha) * base
    return torch.where(alpha > 0, mixed, base)


def paste_local(image: torch.Tensor, local: torch.Tensor, region: CropRegion, feather: torch.Tensor) -> torch.Tensor:
    """Resizes the local results (B, h, w, C) back to the crop box and blends each into its copy of the image
    (B, H, W, C)."""
    box = (slice(None), slice(region.top, region.bottom), slice(region.left, region.right))
    patch = resize_image(local[..., : image.shape[-1]], region.box_width, region.box_height)
    out = image.clone()
    out[box] = blend(image[box], patch, feather[box])
    return out
