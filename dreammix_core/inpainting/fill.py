"""Smooth colour diffusion into the masked pixels before the local crop is encoded.

Starting LCG from the surroundings' colours rather than from black or grey keeps the
masked-image conditioning of inpainting models and the initial latent close to the scene.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..masks import is_masked

FILL_SCHEDULE: tuple[tuple[int, int], ...] = (
    (512, 2),
    (256, 2),
    (128, 4),
    (64, 4),
    (33, 8),
    (15, 8),
    (5, 16),
    (3, 16),
)
"""(box radius, repeats) from coarse to fine: the released code's `fooocus_fill`, which passes
each number to PIL's `ImageFilter.BoxBlur` as a radius (a box of 2·radius + 1 pixels)."""


def _row_means(planes: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a window of 2·radius + 1 along the last dim of contiguous planes, edges replicated."""
    size, width = 2 * radius + 1, planes.shape[-1]
    sums = F.pad(F.pad(planes, (radius, radius, 0, 0), mode="replicate").cumsum(-1), (1, 0))
    return (sums[..., size : size + width] - sums[..., :width]) / size


def box_blur(planes: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2·radius + 1)² box of contiguous (batch, channels, height, width) planes, edges replicated.

    Separable running sums, so the cost does not grow with the radius: rows, then columns as rows of the transpose
    (running sums along a contiguous dim are several times faster than along a strided one)."""
    planes = _row_means(planes, radius)
    return _row_means(planes.transpose(-1, -2).contiguous(), radius).transpose(-1, -2).contiguous()


def smooth_fill(
    image: torch.Tensor, mask: torch.Tensor, check_interrupt: Callable[[], None] | None = None
) -> torch.Tensor:
    """Replaces masked pixels of image (B, H, W, C) by a diffusion of the unmasked ones (mask (B, H, W)).

    Only the masked pixels change, so each pass blurs just the masked pixels' bounding box grown by
    the radius, which holds every pixel their boxes reach: the same values, less work for small holes.
    `check_interrupt` is called before every pass and may raise to stop (ComfyUI's Cancel).
    """
    known = ~is_masked(mask)[:, None]
    if not known.any():
        return image
    work = image.to(torch.float32).movedim(-1, 1).contiguous()
    height, width = work.shape[-2:]
    rows = torch.nonzero((~known).any(dim=(0, 1, 3))).flatten()
    cols = torch.nonzero((~known).any(dim=(0, 1, 2))).flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    hole = (..., slice(top, bottom), slice(left, right))
    known_hole, original_hole = known[hole], work[hole].clone()
    for radius, repeats in FILL_SCHEDULE:
        y0, y1 = max(0, top - radius), min(height, bottom + radius)
        x0, x1 = max(0, left - radius), min(width, right + radius)
        inner = (..., slice(top - y0, bottom - y0), slice(left - x0, right - x0))
        for _ in range(repeats):
            if check_interrupt is not None:
                check_interrupt()
            blurred = box_blur(work[..., y0:y1, x0:x1].contiguous(), radius)[inner]
            work[hole] = torch.where(known_hole, original_hole, blurred)
    return work.movedim(1, -1).to(image.dtype)
