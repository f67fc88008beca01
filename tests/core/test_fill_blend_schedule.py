"""Smooth fill, feathered blending and the switch rule."""

import pytest
import torch

from dreammix_core.blend import blend, feather_mask
from dreammix_core.errors import DreamMixInputError
from dreammix_core.fill import box_blur, smooth_fill
from dreammix_core.schedule import switch_step


def test_box_blur_matches_average_pooling() -> None:
    image = torch.rand(1, 37, 29, 3)
    for size in (3, 4, 15):
        low, high = size // 2, size - 1 - size // 2
        padded = torch.nn.functional.pad(image.movedim(-1, 1), (low, high, low, high), mode="replicate")
        expected = torch.nn.functional.avg_pool2d(padded, size, stride=1).movedim(1, -1)
        assert torch.allclose(box_blur(image, size), expected, atol=1e-5)


def test_fill_keeps_known_pixels_and_diffuses_their_colour() -> None:
    image = torch.zeros(1, 64, 64, 3)
    image[:, :, :32] = torch.tensor([1.0, 0.0, 0.0])
    image[:, :, 32:] = torch.tensor([0.0, 0.0, 1.0])
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    noisy = image.clone()
    noisy[mask.bool()] = torch.rand(int(mask.sum()), 3)
    filled = smooth_fill(noisy, mask)
    assert torch.equal(filled[~mask.bool()], image[~mask.bool()])
    assert filled[0, 32, 17, 0] > filled[0, 32, 46, 0]
    assert torch.allclose(filled[..., 1], torch.zeros(1, 64, 64), atol=1e-5)


def test_fill_of_a_constant_surround_is_that_constant() -> None:
    image = torch.full((1, 40, 50, 3), 0.3)
    mask = torch.zeros(1, 40, 50)
    mask[:, 10:30, 5:45] = 1
    image[mask.bool()] = 0.9
    assert torch.allclose(smooth_fill(image, mask), torch.full((1, 40, 50, 3), 0.3), atol=1e-4)


def test_feather_is_one_inside_linear_outside_zero_beyond() -> None:
    mask = torch.zeros(1, 200, 200)
    mask[:, 90:110, 90:110] = 1
    alpha = feather_mask(mask, 32)
    assert torch.all(alpha[mask.bool()] == 1)
    assert torch.isclose(alpha[0, 100, 110], torch.tensor(31 / 32))
    assert torch.isclose(alpha[0, 100, 109 + 16], torch.tensor(16 / 32))
    assert alpha[0, 100, 109 + 32] == 0 and alpha[0, 100, 109 + 31] > 0
    assert torch.all(alpha[:, : 90 - 32] == 0) and torch.all(alpha[:, :, 110 + 31 :] == 0)


def test_blend_returns_the_base_bit_for_bit_where_alpha_is_zero() -> None:
    base, top = torch.rand(1, 30, 30, 3), torch.rand(1, 30, 30, 3)
    alpha = torch.zeros(1, 30, 30)
    alpha[:, 10:20, 10:20] = 0.5
    out = blend(base, top, alpha)
    assert torch.equal(out[alpha == 0], base[alpha == 0])
    assert torch.allclose(out[alpha > 0], 0.5 * base[alpha > 0] + 0.5 * top[alpha > 0])


@pytest.mark.parametrize(
    "steps, lam, expected", [(30, 1 / 3, 20), (30, 0.7, 9), (30, 0.0, 30), (30, 1.0, 0), (1, 0.5, 1), (12, 1 / 3, 8)]
)
def test_switch_step(steps: int, lam: float, expected: int) -> None:
    assert switch_step(steps, lam) == expected


@pytest.mark.parametrize("steps, lam", [(30, -0.1), (30, 1.01), (0, 0.5)])
def test_switch_out_of_range_is_refused(steps: int, lam: float) -> None:
    with pytest.raises(DreamMixInputError):
        switch_step(steps, lam)
