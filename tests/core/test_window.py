"""GCH on a window of a photo larger than the budget: its geometry, hand-checked, and the pipeline using it."""

from __future__ import annotations

import pytest
import torch
from test_pipeline import RecordingBackend

from dreammix_core.errors import DreamMixInputError
from dreammix_core.inpainting.blend import feather_mask
from dreammix_core.inpainting.pipeline import InpaintSettings, dreammix_inpaint
from dreammix_core.inpainting.window import Window, gch_window, put


def box_mask(height: int, width: int, left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    mask = torch.zeros(1, height, width)
    mask[:, top:bottom, left:right] = 1
    return mask


def test_window_is_the_budget_around_the_mask_and_its_feather() -> None:
    """1000x800 photo, mask x 400..500, y 300..380, feather 32: needs x 368..532, y 268..412 (164x144).
    Budget 2 × 256² = 131072 px: width floor64(√131072 = 362) = 320, height floor64(131072 / 320 = 409.6) = 384,
    width again floor64(131072 / 384 = 341.3) = 320. Centred on the need: left 368 − (320 − 164) // 2 = 290,
    top 268 − (384 − 144) // 2 = 148."""
    window = gch_window(box_mask(800, 1000, 400, 300, 500, 380), 256 * 256, 2.0, 32)
    assert window == Window(290, 148, 610, 532, 1000, 800)
    assert window.width * window.height <= 2 * 256 * 256


def test_a_window_at_the_edge_is_shifted_inside_and_gives_the_cut_side_to_the_other() -> None:
    """Mask in the top-left corner of a 2000x300 strip: the height stops at the photo's 300, so the width takes
    floor64(131072 / 300 = 436.9) = 384; the window starts at the left edge."""
    window = gch_window(box_mask(300, 2000, 10, 20, 60, 90), 256 * 256, 2.0, 32)
    assert window == Window(0, 0, 384, 300, 2000, 300)


def test_a_mask_larger_than_the_budget_keeps_its_pixels() -> None:
    """The need (mask 700x500 + 2 × 32 feather = 764x564) exceeds the 320x384 budget: the window is the need
    rounded up to multiples of 64 (768x576), never a downscaled subject."""
    window = gch_window(box_mask(2000, 3000, 1000, 1000, 1700, 1500), 256 * 256, 2.0, 32)
    assert (window.width, window.height) == (768, 576)
    assert window.left <= 1000 - 32 and window.right >= 1700 + 32
    assert window.top <= 1000 - 32 and window.bottom >= 1500 + 32


@pytest.mark.parametrize(
    ("height", "width", "max_area"),
    [
        (800, 1000, 0.0),  # off: the paper's whole-image GCH
        (512, 512, 4.0),  # within budget (4 × 256² = 512²)
        (600, 500, 20.0),  # budget larger than the photo
    ],
)
def test_no_window_within_the_budget_or_when_off(height: int, width: int, max_area: float) -> None:
    assert gch_window(box_mask(height, width, 100, 100, 200, 200), 256 * 256, max_area, 32) is None


def test_a_photo_exactly_at_the_budget_is_whole() -> None:
    """1000x262 = 262000 px over a budget of 4 × 65500: at the budget, so no window, though one (960 wide)
    would fit."""
    assert gch_window(box_mask(262, 1000, 100, 100, 200, 200), 65500, 4.0, 32) is None


def test_a_window_that_would_cover_the_photo_is_the_whole_photo() -> None:
    """600x130 photo over a 2 × 64² budget: the need fills the height and the width."""
    assert gch_window(box_mask(130, 600, 0, 0, 600, 130), 64 * 64, 2.0, 32) is None


def test_negative_budget_is_refused() -> None:
    with pytest.raises(DreamMixInputError, match=r"^global_max_area must be 0 \(whole image\) or more, got -1.0\.$"):
        gch_window(box_mask(800, 1000, 400, 300, 500, 380), 256 * 256, -1.0, 32)


@pytest.mark.parametrize(("height", "width"), [(800, 1000), (384 + 64, 320), (384, 320 + 64), (383, 320)])
def test_put_refuses_a_generated_image_of_another_size(height: int, width: int) -> None:
    """The window's size plus latent padding (under 64) is accepted; anything else names both sizes."""
    window = Window(290, 148, 610, 532, 1000, 800)
    with pytest.raises(
        DreamMixInputError,
        match=f"^The generated image is {width}x{height} but the GCH window is 320x384: connect the window of the "
        r"DreamMix Local Replace that made it\.$",
    ):
        put(torch.zeros(1, 800, 1000, 3), torch.zeros(1, height, width, 3), window)
    placed = put(torch.zeros(1, 800, 1000, 3), torch.ones(1, 384 + 63, 320 + 63, 3), window)
    assert placed.sum() == 3 * 384 * 320 and placed[0, 148:532, 290:610].min() == 1


def test_a_window_at_the_far_edges_is_shifted_back_inside() -> None:
    """The first edge test mirrored: mask x 1940..1990, y 210..280 of the 2000x300 strip needs x 1908..2000 (the
    feather stops at the edge), y 178..300. The window is again 384x300; centred on the need it would start at
    1908 − (384 − 92) // 2 = 1762 and end past the photo, so it is shifted back to end at 2000 (start 1616), and
    the height (the photo's 300) starts at 0."""
    window = gch_window(box_mask(300, 2000, 1940, 210, 1990, 280), 256 * 256, 2.0, 32)
    assert window == Window(1616, 0, 2000, 300, 2000, 300)


@pytest.mark.parametrize(
    ("height", "width", "mask_box", "expected"),
    [
        (300, 400, (0, 100, 97, 120), Window(0, 46, 192, 174, 400, 300)),
        (400, 300, (100, 0, 120, 97), Window(46, 0, 174, 192, 300, 400)),
    ],
)
def test_a_mask_on_the_left_or_top_edge_keeps_its_first_column_or_row(
    height: int, width: int, mask_box: tuple[int, int, int, int], expected: Window
) -> None:
    """A mask from column 0 to 97 (then its transpose, from row 0) over a budget of 64²: the feather stops at the
    edge, so the need runs from 0 to 97 + 32 = 129, rounded up to 192 (the budget gives nothing more); the other
    side's need 20 + 64 = 84 takes 128, centred: 68 − (128 − 84) // 2 = 46. The window starts at the edge, so the
    mask's first column (row) is in it."""
    window = gch_window(box_mask(height, width, *mask_box), 64 * 64, 1.0, 32)
    assert window == expected


def test_an_empty_mask_over_the_budget_is_refused() -> None:
    with pytest.raises(DreamMixInputError, match=r"^The mask is empty: paint the area where the subject should go"):
        gch_window(torch.zeros(1, 800, 1000), 256 * 256, 2.0, 32)


def test_put_places_each_generated_image_on_its_own_original() -> None:
    """Two originals and two generated images: the first goes into the first original's window, the second into
    the second's; two originals with three generated images are refused."""
    window = Window(290, 148, 610, 532, 1000, 800)
    generator = torch.Generator().manual_seed(6)
    originals = torch.rand(2, 800, 1000, 3, generator=generator)
    generated = torch.rand(2, 384, 320, 3, generator=generator)
    expected = originals.clone()
    expected[0, 148:532, 290:610] = generated[0]
    expected[1, 148:532, 290:610] = generated[1]
    assert torch.equal(put(originals, generated, window), expected)
    with pytest.raises(
        DreamMixInputError,
        match=r"^The generated images are a batch of 3 but the originals a batch of 2: composite each scene's results "
        r"onto its own original\.$",
    ):
        put(originals, torch.zeros(3, 384, 320, 3), window)


def test_put_keeps_the_photos_alpha() -> None:
    """An RGBA photo and an RGBA generated image: the window takes the generated RGB, every pixel keeps the photo's
    alpha."""
    window = Window(290, 148, 610, 532, 1000, 800)
    photo = torch.full((1, 800, 1000, 4), 0.3)
    generated = torch.full((1, 384, 320, 4), 0.9)
    out = put(photo, generated, window)
    expected = photo.clone()
    expected[:, 148:532, 290:610, :3] = 0.9
    assert torch.equal(out, expected)


def test_gch_runs_on_the_window_at_the_photo_scale_and_the_background_stays_exact() -> None:
    """The first test's photo and mask at resolution 128: LCG's crop box is 500x400 (half the photo each way), worked
    at 128x128, so a budget of 8 × 128² is that test's 131072 px and its window (290, 148)-(610, 532). GCH sees the
    composite's own pixels there (no resampling), the mask cut the same way, and outside mask + feather the result
    is the photo."""
    image = torch.rand(1, 800, 1000, 3, generator=torch.Generator().manual_seed(2))
    mask = box_mask(800, 1000, 400, 300, 500, 380)
    backend = RecordingBackend()
    out = dreammix_inpaint(backend, image, mask, InpaintSettings(steps=6, resolution=128, seed=3, global_max_area=8.0))
    local, harmonise = backend.stages
    assert local.pixels.shape[1:3] == (128, 128)
    rows, cols = slice(148, 532), slice(290, 610)
    assert harmonise.pixels.shape[1:3] == (384, 320) and torch.equal(harmonise.mask, mask[:, rows, cols])
    outside_feather = feather_mask(mask, 32)[:, rows, cols] == 0
    assert torch.equal(harmonise.pixels[outside_feather], image[:, rows, cols][outside_feather])  # photo pixels
    outside = feather_mask(mask, 32) == 0
    assert torch.equal(out[outside], image[outside])
    assert torch.equal(out[mask.bool()], torch.full_like(out[mask.bool()], 0.04))  # GCH's constant, seed 3 + 1


def _escapes(mask: torch.Tensor, working_area: int, max_area: float, feather: int) -> int:
    """Pixels the final composite blends (feather weight above 0) that lie outside the window GCH ran on."""
    window = gch_window(mask, working_area, max_area, feather)
    assert window is not None  # every case is over its budget: a window, not the whole image
    outside = torch.ones_like(mask, dtype=torch.bool)
    outside[:, window.top : window.bottom, window.left : window.right] = False
    return int(((feather_mask(mask, feather) > 0) & outside).sum())


@pytest.mark.parametrize("feather", [32, 9])
def test_every_pixel_the_feather_reaches_lies_inside_the_window(feather: int) -> None:
    """The final composite takes GCH's result wherever the feather is above 0, so a feathered pixel outside the window
    would get a result GCH never made. Over a budget of 64² the window is the mask's need rounded up to multiples of
    64 and centred, so box sides running through 64 values give every rounding slack from 0 to 63 (both ways at
    once); then boxes against each edge and corner of the 330x200 photo, a disk the corner clips, a diagonal stroke
    from the top edge, and a small mask in a larger budget (the budget's window)."""
    height, width = 200, 330
    cases = {}
    for side in range(96, 160):
        left, top = (width - side) // 2, (height - (side - 40)) // 2
        cases[f"{side}x{side - 40} centred"] = box_mask(height, width, left, top, left + side, top + side - 40)
    for side in (101, 130):
        for left, top in ((0, 0), (3, 70), (width - side - 2, 4), (width - side, height - 60), (100, height - 63)):
            cases[f"{side}x60 at {left},{top}"] = box_mask(height, width, left, top, left + side, top + 60)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    cases["disk"] = ((rows - 170) ** 2 + (cols - 300) ** 2 <= 45**2).float()[None]
    cases["stroke"] = (((rows - cols + 50).abs() <= 2) & (cols < 200)).float()[None]
    budgets = {name: 1.0 for name in cases}
    cases["small"], budgets["small"] = box_mask(height, width, 150, 90, 170, 110), 4.0
    escapes = {name: _escapes(mask, 64 * 64, budgets[name], feather) for name, mask in cases.items()}
    assert {name: count for name, count in escapes.items() if count} == {}


@pytest.mark.parametrize(
    ("side", "box_height"), [(152, 88), (151, 87), (150, 24), (149, 100), (155, 91), (108, 44), (120, 60)]
)
def test_the_result_is_gch_blended_by_the_feather_everywhere_it_reaches(side: int, box_height: int) -> None:
    """End to end with a feather of 20 and a GCH window (budget 64², LCG working at 64x64): the recording backend's
    GCH gives 0.04 (seed 3 + 1), so the result must be a·0.04 + (1 − a)·photo with a = max(0, 1 − d / 20) for d the
    chessboard distance to the box, written out here; a feathered pixel outside the window would show LCG's paste
    instead. The needs (box + 40) are 0 to 3 px under a multiple of 64 (the tightest windows), or a few over one."""
    height, width, feather = 200, 330, 20
    left, top = (width - side) // 2, (height - box_height) // 2
    image = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(5))
    mask = box_mask(height, width, left, top, left + side, top + box_height)
    backend = RecordingBackend()
    settings = InpaintSettings(steps=6, resolution=64, seed=3, feather=feather, global_max_area=1.0)
    out = dreammix_inpaint(backend, image, mask, settings)
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
    dy = (top - rows).clamp(min=0) + (rows - (top + box_height - 1)).clamp(min=0)
    dx = (left - cols).clamp(min=0) + (cols - (left + side - 1)).clamp(min=0)
    alpha = (1 - torch.maximum(dx, dy) / feather).clamp(min=0)[None, :, :, None]
    torch.testing.assert_close(out, alpha * 0.04 + (1 - alpha) * image, atol=1e-6, rtol=0)
    local, harmonise = backend.stages
    assert local.pixels.shape[1:3] == (64, 64)  # the working area, so the budget is 64²
    assert harmonise.pixels.shape[1:3] == (-(-(box_height + 40) // 64) * 64, -(-(side + 40) // 64) * 64)
