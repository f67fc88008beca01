"""The pack's one rule for grey masks: a pixel is masked where its value is at least 0.5.

Every module that reads a MASK (crop, feather, fill, augmentation, training crops, metrics) asks
here, so a mask that one stage accepts is never empty, or larger, for the next.
"""

import torch

MASK_THRESHOLD = 0.5


def is_masked(mask: torch.Tensor) -> torch.Tensor:
    """Boolean tensor of the masked pixels."""
    return mask >= MASK_THRESHOLD


def binarize(mask: torch.Tensor) -> torch.Tensor:
    """The mask as float32 0/1."""
    return is_masked(mask).to(torch.float32)


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the masked pixels of a (H, W) mask, right/bottom exclusive; None if empty."""
    plane = is_masked(mask)
    rows = torch.nonzero(plane.any(dim=1)).flatten()
    cols = torch.nonzero(plane.any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
