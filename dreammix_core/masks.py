"""The pack's rules for masks: a pixel is masked where its value is at least 0.5, and images take one mask for
all of them or one each.

Every module that reads a MASK (crop, feather, fill, augmentation, training crops, metrics) asks
here, so a mask that one stage accepts is never empty, or larger, for the next.
"""

import torch

from .errors import DreamMixInputError

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


def check_mask_count(masks: int, items: int, item: str) -> None:
    """Refuses `masks` masks for `items` images unless there is one mask for all or one per image (`item` names
    one image: "scene", "subject photo")."""
    if masks not in (1, items):
        raise DreamMixInputError(f"{items} {item}s but {masks} masks: give one mask for all, or one per {item}.")
