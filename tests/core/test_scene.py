"""The scene record the granular chain passes Crop → Replace → Composite, and the pipeline steps that take it."""

from __future__ import annotations

import re

import pytest
import torch

from dreammix_core.errors import DreamMixInputError
from dreammix_core.inpainting.pipeline import prepare_global, stitch
from dreammix_core.inpainting.region import CropRegion
from dreammix_core.inpainting.scene import Scene, prepare_scene
from dreammix_core.inpainting.window import Window

HEIGHT, WIDTH = 800, 1000
BOX = (400, 300, 500, 380)  # left, top, right, bottom of the mask
WINDOW = Window(290, 148, 610, 532, WIDTH, HEIGHT)
"""The window of BOX for 2 × a 256² working area and a 32 px feather (test_window works it out by hand)."""


def photo() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(1, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, HEIGHT, WIDTH)
    mask[:, BOX[1] : BOX[3], BOX[0] : BOX[2]] = 1
    return image, mask


def scene(feather: int = 32) -> Scene:
    """A scene whose crop region is given by hand: 256² working area, so the window depends on nothing else."""
    image, mask = photo()
    return Scene(image, mask, feather, CropRegion(300, 200, 600, 480, 256, 256, WIDTH, HEIGHT))


def test_the_window_comes_from_the_working_area_and_the_feather() -> None:
    assert scene().windowed(2.0).window == WINDOW
    assert scene().windowed(0.0).window is None  # the paper: the whole scene
    assert scene(feather=200).windowed(2.0).window == Window(194, 84, 706, 596, WIDTH, HEIGHT)  # 500x480 needed
    assert scene().windowed(4.0).window == Window(194, 84, 706, 596, WIDTH, HEIGHT)


def test_prepare_scene_holds_the_mask_and_its_feather_in_the_crop() -> None:
    """The crop box holds the mask plus the feather on every side; the image is kept as float32, the mask binary."""
    image, mask = photo()
    made = prepare_scene(image.half(), mask * 0.6, 0.0, 256, 100)
    region = made.region
    assert made.image.dtype == torch.float32 and torch.equal(made.binary, mask)
    assert region.left <= BOX[0] - 100 and region.top <= BOX[1] - 100
    assert region.right >= BOX[2] + 100 and region.bottom >= BOX[3] + 100
    assert made.window is None and made.feather == 100


def test_prepare_global_cuts_the_window_and_pads_to_whole_cells() -> None:
    """A 320x384 window on a latent of 7-pixel cells: padded by 2 columns and 1 row, the image by its edge, the mask
    with 0 (kept)."""
    windowed = scene().windowed(2.0)
    composite = torch.rand(2, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(5))
    pixels, mask = prepare_global(windowed, composite, 7)
    assert pixels.shape == (2, 385, 322, 3) and mask.shape == (1, 385, 322)
    assert torch.equal(pixels[:, :384, :320], composite[:, 148:532, 290:610])
    assert torch.equal(pixels[:, 384, :320], composite[:, 531, 290:610])
    assert torch.equal(pixels[:, :384, 321], composite[:, 148:532, 609])
    assert torch.equal(mask[:, :384, :320], windowed.binary[:, 148:532, 290:610])
    assert mask[:, 384:].sum() == 0 and mask[:, :, 320:].sum() == 0
    whole, _ = prepare_global(scene(), composite, 8)
    assert torch.equal(whole, composite)


def test_stitch_puts_the_window_back_and_blends_with_the_feather() -> None:
    """Generated 0.9 everywhere (with latent padding): the mask gets 0.9, the ramp 1 − d/feather at chessboard
    distance d outside it, and the original comes back exactly everywhere else, inside the window or not."""
    windowed = scene().windowed(2.0)
    out = stitch(windowed, torch.full((1, 384 + 5, 320 + 3, 3), 0.9))
    original = windowed.image
    assert torch.equal(out[:, BOX[1] : BOX[3], BOX[0] : BOX[2]], torch.full((1, 80, 100, 3), 0.9))
    alpha = 1 - 10 / 32
    expected = alpha * 0.9 + (1 - alpha) * original[0, 340, BOX[2] + 9]
    assert torch.allclose(out[0, 340, BOX[2] + 9], expected)
    far = torch.ones(HEIGHT, WIDTH, dtype=torch.bool)
    far[BOX[1] - 31 : BOX[3] + 31, BOX[0] - 31 : BOX[2] + 31] = False
    assert torch.equal(out[0][far], original[0][far])


def test_rewired_inputs_replace_the_scenes_own() -> None:
    """Old workflows wire the image, mask and feather again: each replaces the scene's; an image of another size is
    refused with the sizes."""
    made = scene()
    brighter = made.image * 0.5
    grown = made.binary.clone()
    grown[:, 290:300, 400:500] = 0.7
    rewired = made.rewired(brighter, grown, 4)
    assert torch.equal(rewired.image, brighter) and torch.equal(rewired.binary, (grown >= 0.5).float())
    assert rewired.feather == 4 and rewired.alpha[0, 340, BOX[2] + 1].item() == 0.5
    assert made.rewired() is made
    expected = (
        "The image is 1000x700 but DreamMix Local Crop cut its region from a 1000x800 image: connect the same image."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        made.rewired(torch.zeros(1, 700, 1000, 3))
