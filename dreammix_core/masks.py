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


INPAINT_FILL = 0.5
"""The grey inpainting models see where the mask removes the image (as SD-inpainting was trained and ComfyUI's
InpaintModelConditioning gives it)."""


def masked_image(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`pixels` with the masked ones set to INPAINT_FILL: the known content an inpainting model takes, in training
    and in sampling. The binary `mask` broadcasts against `pixels`. Written as InpaintModelConditioning writes it,
    so the two agree bit for bit."""
    return (pixels - INPAINT_FILL) * (1.0 - mask) + INPAINT_FILL


EMPTY_MASK = (
    "The mask is empty: paint the area where the subject should go (values of 0.5 or more count as masked). "
    "Load Image gives an empty mask when the image has no alpha channel: paint one in the mask editor or use Load "
    "Image (as Mask)."
)
"""The refusal of an inpainting mask without a masked pixel, wherever it is found."""


def masked_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """`mask_bbox` of a mask that must mark something: an empty one is refused with `EMPTY_MASK`."""
    box = mask_bbox(mask)
    if box is None:
        raise DreamMixInputError(EMPTY_MASK)
    return box


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
