"""The subject photos of a LoRA training run: one image and one mask per photo, each at its own size.

Photos of a subject rarely share a size, and resizing them to one batch would distort or crop the
subject, so they stay separate. `collect_photos` pairs each image with its mask, inverts the masks
when they come from an alpha channel (ComfyUI's Load Image gives 1 where the photo is transparent),
and names the photo and the fix when a pair cannot be trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DreamMixInputError
from ..masks import binarize


def _single(tensor: torch.Tensor, name: str, what: str, ndim: int) -> torch.Tensor:
    """The one photo (or mask) of an input, as a batch of one."""
    if tensor.ndim == ndim - 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != ndim or (what == "image" and tensor.shape[-1] not in (3, 4)):
        raise DreamMixInputError(f"{name} should be a ComfyUI {what.upper()}, got shape {tuple(tensor.shape)}.")
    if tensor.shape[0] != 1:
        raise DreamMixInputError(
            f"{name} holds a batch of {tensor.shape[0]} {what}s: each input takes one. Connect them to {what}_1, "
            f"{what}_2, … one by one (split a batch with 'Image From Batch')."
        )
    return tensor


def collect_photos(
    pairs: Sequence[tuple[torch.Tensor | None, torch.Tensor | None]], invert_masks: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Images (1, H, W, 3) and masks (1, H, W), 1 on the subject, of the connected photos in order.

    `pairs[i]` is photo i + 1's (image, mask), None where an input is not connected; photos with
    neither are skipped. Mask values are kept (a soft edge stays soft); empty means no value ≥ 0.5.
    """
    images, masks = [], []
    for number, (image, mask) in enumerate(pairs, start=1):
        if image is None and mask is None:
            continue
        if mask is None:
            raise DreamMixInputError(
                f"Photo {number} has an image but no mask: connect mask_{number} (Load Image's MASK output, or a "
                "segmentation node's mask)."
            )
        if image is None:
            raise DreamMixInputError(f"Photo {number} has a mask but no image: connect image_{number}.")
        image = _single(image, f"image_{number}", "image", 4)[..., :3]
        mask = _single(mask, f"mask_{number}", "mask", 3)
        if mask.shape[1:] != image.shape[1:3]:
            raise DreamMixInputError(
                f"Photo {number}: the mask is {mask.shape[2]}x{mask.shape[1]} but the image is "
                f"{image.shape[2]}x{image.shape[1]}; each photo needs a mask of its own size. Load Image gives a "
                "64x64 empty mask for a photo without alpha channel: save the photo with the background "
                "transparent, or take the mask from a segmentation node."
            )
        if invert_masks and not binarize(mask).any():
            raise DreamMixInputError(
                f"Photo {number} has no transparent pixel, so with invert_masks on its mask would cover the whole "
                "photo (Load Image gives an empty mask for a photo without alpha channel). Save the photo with the "
                "background transparent, or connect a mask that is 1 on the subject and turn invert_masks off."
            )
        if invert_masks:
            mask = 1.0 - mask
        if not binarize(mask).any():
            raise DreamMixInputError(
                f"Photo {number}: the mask is empty after inversion (the photo is transparent everywhere). With "
                "invert_masks on, the subject must be opaque and the background transparent."
                if invert_masks
                else f"Photo {number}: the mask is empty (values of 0.5 or more mark the subject). With invert_masks "
                "off the mask must be 1 on the subject, as segmentation nodes give it; for Load Image's alpha mask "
                "(1 where transparent) turn invert_masks on."
            )
        images.append(image)
        masks.append(mask)
    return images, masks
