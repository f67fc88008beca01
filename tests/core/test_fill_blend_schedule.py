"""Smooth fill, feathered blending and the switch rule."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from dreammix_core.errors import DreamMixInputError
from dreammix_core.inpainting.blend import blend, feather_mask
from dreammix_core.inpainting.fill import FILL_SCHEDULE, box_blur, smooth_fill
from dreammix_core.inpainting.schedule import StageSplit, switch_step


def numpy_box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    """Independent reference: the mean of the (2r+1)² window around each pixel of an edge-padded copy."""
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge").astype(np.float64)
    size = 2 * radius + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(0, 1))
    return windows.mean(axis=(-2, -1))


def blur_image(image: torch.Tensor, radius: int) -> torch.Tensor:
    """`box_blur` of a (batch, height, width, channels) image, through the planes layout it takes."""
    return box_blur(image.movedim(-1, 1).contiguous(), radius).movedim(1, -1)


@pytest.mark.parametrize("radius", [1, 2, 7, 40])
def test_box_blur_radius_is_a_box_of_2r_plus_1(radius: int) -> None:
    """The released code's numbers are PIL BoxBlur radii; 40 exceeds the 37x29 image (edges replicated)."""
    image = torch.rand(1, 37, 29, 3, generator=torch.Generator().manual_seed(radius))
    expected = numpy_box_mean(image[0].numpy(), radius)
    np.testing.assert_allclose(blur_image(image, radius)[0].numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("radius", [1, 5, 15])
def test_box_blur_matches_pil_box_blur(radius: int) -> None:
    """What `fooocus_fill` calls: PIL's BoxBlur(radius) on uint8, equal up to PIL's rounding to 8 bits."""
    pixels = np.random.default_rng(radius).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(pixels).filter(ImageFilter.BoxBlur(radius)), dtype=np.float64)
    ours = blur_image(torch.from_numpy(pixels).float()[None] / 255, radius)[0].numpy() * 255
    assert np.abs(ours - pil).max() <= 1.0


def released_fill(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An independent implementation of the released `fooocus_fill` (PIL BoxBlur on uint8, known pixels reset)."""
    area = mask < 127
    current, store = pixels.copy(), pixels[area]
    for radius, repeats in [(512, 2), (256, 2), (128, 4), (64, 4), (33, 8), (15, 8), (5, 16), (3, 16)]:
        for _ in range(repeats):
            current = np.asarray(Image.fromarray(current).filter(ImageFilter.BoxBlur(radius))).copy()
            current[area] = store
    return current


@pytest.mark.parametrize("hole", [(20, 70, 30, 100), (0, 40, 90, 128), (50, 53, 2, 4)], ids=["inner", "corner", "tiny"])
def test_fill_follows_the_released_fill(hole: tuple[int, int, int, int]) -> None:
    """Inside the hole the fill equals the released one up to the released code's 8-bit rounding per pass,
    wherever the hole lies (each pass blurs only the hole's box grown by the radius, clamped to the image)."""
    rng = np.random.default_rng(3)
    height, width = 96, 128
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    pixels = np.stack([200 * x, 180 * y, 100 + 80 * x * y], -1) + rng.normal(0, 12, (height, width, 3))
    pixels = pixels.clip(0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[hole[0] : hole[1], hole[2] : hole[3]] = 255
    released = released_fill(pixels, mask).astype(np.float64)
    ours = smooth_fill(torch.from_numpy(pixels).float()[None] / 255, torch.from_numpy(mask).float()[None] / 255)
    difference = np.abs(ours[0].numpy() * 255 - released)[mask > 0]
    print(f"fill vs released: max {difference.max():.2f}/255, mean {difference.mean():.3f}/255")
    assert difference.max() <= 4.0 and difference.mean() <= 1.0


def test_fill_checks_for_interrupts_between_passes() -> None:
    calls = []
    image, mask = torch.rand(1, 16, 16, 3), torch.ones(1, 16, 16)
    mask[:, :4] = 0
    smooth_fill(image, mask, check_interrupt=lambda: calls.append(1))
    assert len(calls) == sum(repeats for _, repeats in FILL_SCHEDULE)

    def cancel() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        smooth_fill(image, mask, check_interrupt=cancel)


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


@pytest.mark.parametrize(
    "lam, switch_at, local, harmonize",
    [
        (0.0, 12, True, False),
        (1.0, 0, False, True),
        (1 / 3, 8, True, True),
        (0.96, 0, False, True),
        (0.04, 12, True, False),
    ],
)
def test_stage_split_says_which_stages_run(lam: float, switch_at: int, local: bool, harmonize: bool) -> None:
    """12 steps: λ = 0 is LCG only, λ = 1 GCH only; λ = 0.96 rounds to no LCG step, λ = 0.04 to no GCH step."""
    split = StageSplit.of(12, lam)
    assert (split.switch_at, split.runs_local, split.runs_global) == (switch_at, local, harmonize)
