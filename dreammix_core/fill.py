"""Smooth colour diffusion into the masked pixels before the local crop is encoded.

Starting LCG from the surroundings' colours rather than from black or grey keeps the
masked-image conditioning of inpainting models and the initial latent close to the scene.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def box_blur(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2·radius + 1)² box of a (batch, height, width, channels) image, edges replicated.

    Separable running sums, so the cost does not grow with the radius.
    """
    planes = image.movedim(-1, 1)
    size = 2 * radius + 1
    height, width = planes.shape[-2:]
    sums = F.pad(F.pad(planes, (radius, radius, 0, 0), mode="replicate").cumsum(-1), (1, 0))
    planes = (sums[..., size : size + width] - sums[..., :width]) / size
    sums = F.pad(F.pad(planes, (0, 0, radius, radius), mode="replicate").cumsum(-2), (0, 0, 1, 0))
    planes = (sums[..., size : size + height, :] - sums[..., :height, :]) / size
    return planes.movedim(1, -1)


def smooth_fill(
    image: torch.Tensor, mask: torch.Tensor, check_interrupt: Callable[[], None] | None = None
) -> torch.Tensor:
    """Replaces masked pixels of image (B, H, W, C) by a diffusion of the unmasked ones (mask (B, H, W)).

    `check_interrupt` is called before every pass and may raise to stop (ComfyUI's Cancel).
    """
    known = (mask < 0.5).unsqueeze(-1).to(image.dtype)
    if known.sum() == 0:
        return image
    work = image.to(torch.float32)
    for radius, repeats in FILL_SCHEDULE:
        for _ in range(repeats):
            if check_interrupt is not None:
                check_interrupt()
            work = box_blur(work, radius) * (1 - known) + image * known
    return work.to(image.dtype)
