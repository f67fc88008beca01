"""The local region LCG works on: a context box around the mask, resized to the model's size.

Images are ComfyUI-style tensors (batch, height, width, channels) in [0, 1]; masks are
(batch, height, width). Grey masks are binarised at 0.5 everywhere in the pack, so a soft
brush edge counts as masked where it is at least half opaque.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import DreamMixInputError
from ..masks import EMPTY_MASK, binarize, masked_box

EXPAND = 1.15
"""Half-side of the initial square, relative to the larger half-extent of the mask's box."""
RELEASED_CONTEXT_FACTOR = 0.5
"""The crop covers at least this share of the image's height and width (released notebook)."""
SIZE_MULTIPLE = 64
"""Crop and window sides are multiples of this (every latent cell × patch divides it), so a generated image is
its target plus under this much latent padding on the bottom and right."""

Upscaler = Callable[[torch.Tensor], torch.Tensor]
"""Maps an image (1, h, w, c) to a larger one (1, s·h, s·w, c), e.g. a super-resolution model."""


@dataclass(frozen=True)
class CropRegion:
    """A box of the full image (right and bottom exclusive) and the size LCG renders it at."""

    left: int
    top: int
    right: int
    bottom: int
    width: int
    height: int
    image_width: int
    image_height: int

    @property
    def box_width(self) -> int:
        return self.right - self.left

    @property
    def box_height(self) -> int:
        return self.bottom - self.top


def as_float32(tensor: torch.Tensor) -> torch.Tensor:
    """The pack computes in float32 whatever the host hands it.

    ComfyUI's `--fp16-intermediates` passes IMAGE, MASK and decoded pixels as fp16, for which
    CPU torch lacks antialiased resizing and whose cumulative sums lose precision. float32
    holds every fp16 value exactly, so pixels copied through unchanged stay bit-exact.
    """
    return tensor if tensor.dtype == torch.float32 else tensor.to(torch.float32)


def validate_image_and_mask(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Checks a single image with its mask and returns the mask as (1, H, W) binary."""
    if image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise DreamMixInputError(f"Expected an IMAGE of shape (batch, height, width, 3), got {tuple(image.shape)}.")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise DreamMixInputError(f"Expected a MASK of shape (batch, height, width), got {tuple(mask.shape)}.")
    if image.shape[0] != 1 or mask.shape[0] != 1:
        raise DreamMixInputError(
            f"DreamMix inpaints one image at a time (image batch {image.shape[0]}, mask batch "
            f"{mask.shape[0]}): each mask gets its own crop. Split the batch, e.g. with 'Image From Batch'."
        )
    mask = binarize(mask)
    if not mask.any():
        raise DreamMixInputError(EMPTY_MASK)
    if tuple(mask.shape[-2:]) != tuple(image.shape[1:3]):
        raise DreamMixInputError(
            f"The mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
            f"{image.shape[2]}x{image.shape[1]}: they must be the same size."
        )
    return mask


def _grow(lo: float, hi: float, need: float, limit: int) -> tuple[float, float]:
    """Widens [lo, hi] symmetrically to at least `need`, shifted back inside [0, limit]."""
    size = hi - lo
    if size < need:
        lo, hi = lo - (need - size) / 2, hi + (need - size) / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), float(limit)
    return max(lo, 0.0), min(hi, float(limit))


def working_size(box_width: int, box_height: int, resolution: int, multiple: int) -> tuple[int, int]:
    """Size with area about resolution², the box's aspect ratio, sides a multiple of `multiple`."""
    scale = resolution / math.sqrt(box_width * box_height)
    width = max(multiple, round(box_width * scale / multiple) * multiple)
    height = max(multiple, round(box_height * scale / multiple) * multiple)
    return width, height


def compute_region(
    mask: torch.Tensor,
    context_factor: float = RELEASED_CONTEXT_FACTOR,
    resolution: int = 1024,
    multiple: int = SIZE_MULTIPLE,
    min_margin: int = 0,
) -> CropRegion:
    """The crop box of method.md §2 for a binary mask (1, H, W) or (H, W).

    `min_margin` widens the square so the box holds the mask plus that many pixels on every
    side (clamped to the image); the nodes pass the feather width so the paste ramp is never
    cut by the box edge.
    """
    if not 0.0 <= context_factor <= 1.0:
        raise DreamMixInputError(f"context factor must be between 0 and 1, got {context_factor}.")
    if resolution < multiple:
        raise DreamMixInputError(f"working resolution {resolution} is below the size multiple {multiple}.")
    plane = mask.reshape(mask.shape[-2:])
    image_height, image_width = plane.shape
    left, top, right, bottom = masked_box(plane)

    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    half = max(EXPAND * max(right - left, bottom - top) / 2, max(right - left, bottom - top) / 2 + min_margin)
    x0, x1 = max(centre_x - half, 0.0), min(centre_x + half, float(image_width))
    y0, y1 = max(centre_y - half, 0.0), min(centre_y + half, float(image_height))
    x0, x1 = _grow(x0, x1, context_factor * image_width, image_width)
    y0, y1 = _grow(y0, y1, context_factor * image_height, image_height)

    box = (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))
    width, height = working_size(box[2] - box[0], box[3] - box[1], resolution, multiple)
    return CropRegion(*box, width=width, height=height, image_width=image_width, image_height=image_height)


def resize_image(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bicubic with antialiasing (a good filter both ways), clamped to [0, 1]."""
    image = as_float32(image)
    if image.shape[1:3] == (height, width):
        return image
    resized = F.interpolate(image.movedim(-1, 1), size=(height, width), mode="bicubic", antialias=True)
    return resized.clamp(0.0, 1.0).movedim(1, -1)


def resize_mask(mask: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resizes a (1, H, W) mask and binarises it again."""
    if mask.shape[-2:] == (height, width):
        return binarize(mask)
    resized = F.interpolate(as_float32(mask).unsqueeze(1), size=(height, width), mode="bilinear", antialias=True)
    return binarize(resized.squeeze(1))


def check_generated_size(generated: torch.Tensor, width: int, height: int, target: str, fix: str) -> None:
    """Refuses a generated image (B, H, W, C) that is not `target` (width × height) plus latent padding."""
    if not (0 <= generated.shape[1] - height < SIZE_MULTIPLE and 0 <= generated.shape[2] - width < SIZE_MULTIPLE):
        raise DreamMixInputError(
            f"The generated image is {generated.shape[2]}x{generated.shape[1]} but {target} is {width}x{height}: {fix}"
        )


def crop(
    image: torch.Tensor, mask: torch.Tensor, region: CropRegion, upscaler: Upscaler | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cuts the region out of image (1, H, W, C) and mask (1, H, W) at the working size.

    A crop smaller than the working size goes through `upscaler` first when one is given.
    """
    box_image = image[:, region.top : region.bottom, region.left : region.right, :]
    box_mask = mask[:, region.top : region.bottom, region.left : region.right]
    if upscaler is not None and (region.width > region.box_width or region.height > region.box_height):
        box_image = upscaler(box_image)
    return (
        resize_image(box_image, region.width, region.height),
        resize_mask(box_mask, region.width, region.height),
    )
