"""Crop geometry of method.md §2 on many masks."""

import math
import re

import pytest
import torch

from dreammix_core.errors import DreamMixInputError
from dreammix_core.inpainting.region import EXPAND, compute_region, crop, validate_image_and_mask


def box_mask(height: int, width: int, *boxes: tuple[int, int, int, int]) -> torch.Tensor:
    """(1, H, W) mask with each (top, left, bottom, right) box set."""
    mask = torch.zeros(1, height, width)
    for top, left, bottom, right in boxes:
        mask[:, top:bottom, left:right] = 1
    return mask


CASES = {
    "centre": (512, 512, [(200, 220, 300, 280)]),
    "top-border": (512, 768, [(0, 300, 50, 400)]),
    "bottom-border": (512, 768, [(480, 300, 512, 400)]),
    "left-border": (600, 400, [(250, 0, 350, 40)]),
    "right-border": (600, 400, [(250, 370, 350, 400)]),
    "corner": (300, 500, [(0, 0, 10, 10)]),
    "tiny": (256, 256, [(128, 128, 129, 129)]),
    "whole": (240, 320, [(0, 0, 240, 320)]),
    "blobs": (512, 640, [(40, 40, 80, 90), (400, 500, 450, 600)]),
    "wide": (200, 900, [(90, 100, 110, 800)]),
    "tall": (900, 200, [(100, 90, 800, 110)]),
}


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask[0].any(1)).flatten()
    cols = torch.nonzero(mask[0].any(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@pytest.mark.parametrize("context", [0.0, 0.5, 0.618, 1.0])
@pytest.mark.parametrize("name", sorted(CASES))
def test_region_invariants(name: str, context: float) -> None:
    height, width, boxes = CASES[name]
    mask = box_mask(height, width, *boxes)
    region = compute_region(mask, context_factor=context, resolution=512)
    top, left, bottom, right = mask_bbox(mask)

    assert 0 <= region.left <= left and right <= region.right <= width
    assert 0 <= region.top <= top and bottom <= region.bottom <= height
    assert region.box_width >= min(width, math.floor(context * width))
    assert region.box_height >= min(height, math.floor(context * height))
    assert region.width % 64 == 0 and region.height % 64 == 0
    assert 0.6 < region.width * region.height / 512**2 < 1.5
    aspect_error = (region.width / region.height) / (region.box_width / region.box_height)
    assert 0.6 < aspect_error < 1.6


@pytest.mark.parametrize("name", ["centre", "blobs", "wide"])
def test_square_is_centred_with_expansion(name: str) -> None:
    height, width, boxes = CASES[name]
    mask = box_mask(height, width, *boxes)
    region = compute_region(mask, context_factor=0.0, resolution=512)
    top, left, bottom, right = mask_bbox(mask)
    half = EXPAND * max(right - left, bottom - top) / 2
    centre = (left + right) / 2
    expected_left, expected_right = max(centre - half, 0.0), min(centre + half, float(width))  # clipped, not shifted
    assert abs(region.left - expected_left) <= 1 and abs(region.right - expected_right) <= 1


def test_context_growth_is_symmetric_inside_the_image() -> None:
    mask = box_mask(1000, 1000, (480, 480, 520, 520))
    region = compute_region(mask, context_factor=0.5, resolution=512)
    assert (region.left, region.top, region.right, region.bottom) == (250, 250, 750, 750)


def test_growth_shifts_away_from_the_border() -> None:
    mask = box_mask(1000, 1000, (0, 0, 20, 20))
    region = compute_region(mask, context_factor=0.5, resolution=512)
    assert (region.left, region.top, region.right, region.bottom) == (0, 0, 500, 500)


def test_whole_image_mask_crops_the_whole_image() -> None:
    region = compute_region(torch.ones(1, 240, 320), context_factor=0.5, resolution=256)
    assert (region.left, region.top, region.right, region.bottom) == (0, 0, 320, 240)
    assert (region.width, region.height) == (320, 192) or region.width / region.height > 1


def test_min_margin_keeps_the_feather_inside_the_box() -> None:
    mask = box_mask(1000, 1000, (490, 490, 510, 510))
    region = compute_region(mask, context_factor=0.0, resolution=256, min_margin=32)
    assert region.left <= 490 - 32 and region.right >= 510 + 32


def test_crop_is_at_working_size_with_binary_mask() -> None:
    image = torch.rand(1, 300, 500, 3)
    mask = box_mask(300, 500, (100, 100, 150, 220))
    region = compute_region(mask, 0.5, 256)
    local_image, local_mask = crop(image, mask, region)
    assert local_image.shape == (1, region.height, region.width, 3)
    assert local_mask.shape == (1, region.height, region.width)
    assert set(local_mask.unique().tolist()) <= {0.0, 1.0}


def test_crop_uses_the_upscaler_for_small_crops() -> None:
    calls = []

    def upscaler(image: torch.Tensor) -> torch.Tensor:
        calls.append(image.shape)
        return torch.nn.functional.interpolate(image.movedim(-1, 1), scale_factor=4).movedim(1, -1)

    image = torch.rand(1, 100, 100, 3)
    mask = box_mask(100, 100, (40, 40, 60, 60))
    region = compute_region(mask, 0.5, 512)
    crop(image, mask, region, upscaler)
    assert calls == [(1, region.box_height, region.box_width, 3)]
    big = compute_region(box_mask(2000, 2000, (900, 900, 1100, 1100)), 0.5, 512)
    crop(torch.rand(1, 2000, 2000, 3), box_mask(2000, 2000, (900, 900, 1100, 1100)), big, upscaler)
    assert len(calls) == 1


EMPTY_MASK = (
    "The mask is empty: paint the area where the subject should go (values of 0.5 or more count as masked). "
    "Load Image gives an empty mask when the image has no alpha channel: paint one in the mask editor or "
    "use Load Image (as Mask)."
)
SPLIT = "each mask gets its own crop. Split the batch, e.g. with 'Image From Batch'."


@pytest.mark.parametrize(
    "image_shape, mask_shape, message",
    [
        ((1, 64, 64, 3), (1, 64, 64), EMPTY_MASK),
        ((1, 64, 64, 3), (1, 32, 64), "The mask is 64x32 but the image is 64x64: they must be the same size."),
        ((2, 64, 64, 3), (1, 64, 64), f"DreamMix inpaints one image at a time (image batch 2, mask batch 1): {SPLIT}"),
        ((1, 64, 64, 3), (3, 64, 64), f"DreamMix inpaints one image at a time (image batch 1, mask batch 3): {SPLIT}"),
    ],
)
def test_bad_inputs_are_refused_clearly(image_shape, mask_shape, message) -> None:
    mask = torch.zeros(mask_shape)
    if message != EMPTY_MASK:
        mask[..., :8, :8] = 1
    with pytest.raises(DreamMixInputError, match="^" + re.escape(message) + "$"):
        validate_image_and_mask(torch.rand(image_shape), mask)


def test_grey_masks_binarise_at_one_half() -> None:
    mask = torch.full((1, 16, 16), 0.49)
    mask[:, 4:8, 4:8] = 0.5
    binary = validate_image_and_mask(torch.rand(1, 16, 16, 3), mask)
    assert binary.sum() == 16 and binary[0, 4:8, 4:8].all()
