"""Smooth colour diffusion into the masked pixels before the local crop is encoded.

Starting LCG from the surroundings' colours rather than from black or grey keeps the
masked-image conditioning of inpainting models and the initial latent close to the scene.
"""

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
"""(box size, repeats) from coarse to fine, as in the released code."""


def box_blur(image: torch.Tensor, size: int) -> torch.Tensor:
    """Box filter of a (batch, height, width, channels) image, edges replicated, O(1) per pixel."""
    planes = image.movedim(-1, 1)
    height, width = planes.shape[-2:]
    low, high = size // 2, size - 1 - size // 2
    sums = F.pad(F.pad(planes, (low, high, 0, 0), mode="replicate").cumsum(-1), (1, 0))
    planes = (sums[..., size : size + width] - sums[..., :width]) / size
    sums = F.pad(F.pad(planes, (0, 0, low, high), mode="replicate").cumsum(-2), (0, 0, 1, 0))
    planes = (sums[..., size : size + height, :] - sums[..., :height, :]) / size
    return planes.movedim(1, -1)


def smooth_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replaces masked pixels of image (B, H, W, C) by a diffusion of the unmasked ones (mask (B, H, W))."""
    known = (mask < 0.5).unsqueeze(-1).to(image.dtype)
    if known.sum() == 0:
        return image
    work = image.to(torch.float32)
    for size, repeats in FILL_SCHEDULE:
        for _ in range(repeats):
            work = box_blur(work, size) * (1 - known) + image * known
    return work.to(image.dtype)
