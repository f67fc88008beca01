"""One threshold for every stage: a mask whose values peak at exactly 0.5 is the same region everywhere."""

import numpy as np
import torch

from dreammix_core.evaluation.metrics import subject_box
from dreammix_core.inpainting.blend import feather_mask
from dreammix_core.inpainting.fill import smooth_fill
from dreammix_core.inpainting.region import compute_region, validate_image_and_mask
from dreammix_core.masks import mask_bbox
from dreammix_core.training.data import resize_short_side
from dreammix_core.training.mask_augment import bezier_blob


def test_a_mask_at_exactly_one_half_is_masked_in_every_stage() -> None:
    mask = torch.zeros(64, 96)
    mask[20:30, 40:60] = 0.5
    mask[0:5, 0:5] = 0.4999  # below the threshold everywhere
    box = (40, 20, 60, 30)  # left, top, right, bottom
    assert torch.equal(validate_image_and_mask(torch.rand(1, 64, 96, 3), mask)[0], (mask >= 0.5).float())
    assert mask_bbox(mask) == box
    assert subject_box(mask.numpy()) == box
    assert torch.equal(feather_mask(mask[None], 0)[0], (mask >= 0.5).float())
    region = compute_region(mask[None], context_factor=0.0, resolution=64)
    assert region.left <= 40 and region.right >= 60 and region.top <= 20 and region.bottom >= 30
    assert region.right - region.left < 96  # the 0.4999 corner is not part of it
    image = torch.rand(1, 64, 96, 3)
    filled = smooth_fill(image, mask[None])
    assert not torch.equal(filled[0, 20:30, 40:60], image[0, 20:30, 40:60])
    assert torch.equal(filled[0, 0:5, 0:5], image[0, 0:5, 0:5])
    blob = bezier_blob(mask, torch.Generator().manual_seed(0))
    assert 0 < blob.mean() < 1  # a blob around the box, not the whole image
    assert torch.equal(blob, bezier_blob((mask >= 0.5).float(), torch.Generator().manual_seed(0)))
    _, resized = resize_short_side(torch.rand(64, 96, 3), mask, 64)  # same size: the values are kept
    assert mask_bbox(resized[0]) == box and np.isclose(float(resized.sum()), 200.0)
