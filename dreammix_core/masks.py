"""The pack's one rule for grey masks: a pixel is masked where its value is at least 0.5.

Every module that reads a MASK (crop, feather, fill, augmentation, training crops, metrics) asks
here, so a mask that one stage accepts is never empty, or larger, for the next.
"""

import numpy as np
import torch

MASK_THRESHOLD = 0.5


def is_masked(mask: torch.Tensor) -> torch.Tensor:
    """Boolean tensor of the masked pixels."""
    return mask >= MASK_THRESHOLD


def binarize(mask: torch.Tensor) -> torch.Tensor:
    """The mask as float32 0/1."""
    return is_masked(mask).to(torch.float32)


def is_masked_array(mask: np.ndarray) -> np.ndarray:
    """`is_masked` for numpy arrays (the metrics read PIL masks)."""
    return mask >= MASK_THRESHOLD
