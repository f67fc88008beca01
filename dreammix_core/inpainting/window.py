"""The GCH window: where global harmonisation runs on a photo larger than its pixel budget.

The paper's GCH denoises the whole image. On a phone photo that is many times the model's working
area: attention cost grows with the square of the token count, and SD models invent duplicated
content at several times their training size. Above a budget of `max_area` × the LCG working area
(resolution², the family's native area at resolution 0), GCH runs on a window around the mask at the
photo's own pixel scale (the subject is never downscaled), as large as the budget allows. The window
always holds the mask and its feather, so everything outside it is outside the final composite's
blend and comes back exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import DreamMixInputError
from ..masks import masked_box
from .region import SIZE_MULTIPLE, check_generated_size

DEFAULT_MAX_AREA = 4.0
"""The nodes' budget: 4 × the working area (1 MP for SD1.5, 4 MP for SDXL and FLUX at resolution 0)."""


@dataclass(frozen=True)
class Window:
    """A box of the image (right and bottom exclusive) that GCH denoises at the image's own pixel scale."""

    left: int
    top: int
    right: int
    bottom: int
    image_width: int
    image_height: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _down(value: float) -> int:
    return int(value // SIZE_MULTIPLE) * SIZE_MULTIPLE


def _up(value: int) -> int:
    return -(-value // SIZE_MULTIPLE) * SIZE_MULTIPLE


def _place(need_lo: int, need_hi: int, size: int, limit: int) -> int:
    """The window's start: centred on [need_lo, need_hi), shifted back inside [0, limit)."""
    start = need_lo - (size - (need_hi - need_lo)) // 2
    return min(max(start, 0), limit - size)


def gch_window(mask: torch.Tensor, working_area: int, max_area: float, margin: int) -> Window | None:
    """The window GCH runs on for a binary mask (1, H, W), or None for the whole image.

    None when `max_area` is 0 (the paper's whole-image GCH) or the image is within the budget of
    `max_area` × `working_area` pixels. Otherwise the mask's box grown by `margin` (the feather) on
    every side, widened to the budget: a square where the photo allows (sides multiples of
    SIZE_MULTIPLE), the room an edge takes from one side given to the other. A mask whose box alone
    exceeds the budget gets just that box: the subject keeps its pixels whatever it costs.
    """
    if max_area < 0:
        raise DreamMixInputError(f"global_max_area must be 0 (whole image) or more, got {max_area}.")
    image_height, image_width = mask.shape[-2:]
    budget = max_area * working_area
    if max_area == 0 or image_width * image_height <= budget:
        return None
    box = masked_box(mask.reshape(mask.shape[-2:]))
    left, top = max(box[0] - margin, 0), max(box[1] - margin, 0)
    right, bottom = min(box[2] + margin, image_width), min(box[3] + margin, image_height)

    def fit(limit: int, need: int, room: float) -> int:
        return min(limit, max(_up(need), _down(room)))

    width = fit(image_width, right - left, math.sqrt(budget))
    height = fit(image_height, bottom - top, budget / width)
    width = fit(image_width, right - left, budget / height)
    if (width, height) == (image_width, image_height):
        return None
    x0, y0 = _place(left, right, width, image_width), _place(top, bottom, height, image_height)
    return Window(x0, y0, x0 + width, y0 + height, image_width, image_height)


def cut(image: torch.Tensor, window: Window | None) -> torch.Tensor:
    """The window of an image (B, H, W, C) or mask (B, H, W); the whole of it for None."""
    if window is None:
        return image
    return image[:, window.top : window.bottom, window.left : window.right]


def check_batches(generated: torch.Tensor, image: torch.Tensor) -> None:
    """One original takes any number of generated images (variations); several originals one each."""
    if image.shape[0] != 1 and generated.shape[0] != image.shape[0]:
        raise DreamMixInputError(
            f"The generated images are a batch of {generated.shape[0]} but the originals a batch of "
            f"{image.shape[0]}: composite each scene's results onto its own original."
        )


def put(image: torch.Tensor, generated: torch.Tensor, window: Window | None) -> torch.Tensor:
    """`image` with the window replaced by `generated` (its latent padding cropped off), one copy per generated
    image; `generated` for None."""
    if window is None:
        return generated
    check_batches(generated, image)
    check_generated_size(
        generated,
        window.width,
        window.height,
        "the GCH window",
        "connect the window of the DreamMix Local Replace that made it.",
    )
    out = image.expand(generated.shape[0], *image.shape[1:]).clone()
    rows, cols = slice(window.top, window.bottom), slice(window.left, window.right)
    out[:, rows, cols, :3] = generated[:, : window.height, : window.width, :3]
    return out
