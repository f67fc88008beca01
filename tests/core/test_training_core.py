"""ADM training core (method.md §4): Bézier masks, the weighted loss, the data mix and the resumable loop."""

import random
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dreammix_core.errors import DreamMixInputError
from dreammix_core.masks import mask_bbox, masked_image
from dreammix_core.training.data import MixSampler, Photo, expand, resize_short_side, step_generator
from dreammix_core.training.loop import (
    Example,
    LoopSettings,
    loss_curve_image,
    moving_average,
    train,
    training_blocks,
)
from dreammix_core.training.loss import latent_mask, weighted_loss
from dreammix_core.training.mask_augment import CURVE_T, JITTER_RANGE, bezier_blob, part_boxes, part_outline


def box_mask(height: int, width: int, top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    mask = torch.zeros(height, width)
    mask[top:bottom, left:right] = 1
    return mask


@pytest.mark.parametrize("seed", range(12))
def test_blob_covers_box_core_and_stays_in_image(seed: int) -> None:
    mask = box_mask(256, 320, 80, 100, 180, 220)
    blob = bezier_blob(mask, torch.Generator().manual_seed(seed))
    assert blob.shape == mask.shape and set(blob.unique().tolist()) <= {0.0, 1.0}
    core = JITTER_RANGE[1] + 1  # jitter moves outline points at most 20 px inward
    assert blob[80 + core : 180 - core, 100 + core : 220 - core].min() == 1
    assert blob.sum() >= mask[80 + core : 180 - core, 100 + core : 220 - core].numel()


def test_blob_bulges_outside_the_box_and_is_clipped() -> None:
    mask = box_mask(128, 128, 0, 0, 128, 128)  # box = image: the blob cannot leave it
    blob = bezier_blob(mask, torch.Generator().manual_seed(0))
    assert blob.shape == (128, 128) and blob.mean() > 0.8
    small = box_mask(256, 256, 100, 100, 156, 156)
    grown = sum(bezier_blob(small, torch.Generator().manual_seed(s)).sum() for s in range(8)) / 8
    assert grown > small.sum() * 1.1  # control points pushed outward: on average the blob exceeds the box


def test_blob_varies_with_seed_and_repeats_with_same_seed() -> None:
    mask = box_mask(200, 200, 50, 60, 150, 140)
    first = bezier_blob(mask, torch.Generator().manual_seed(1))
    assert torch.equal(first, bezier_blob(mask, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, bezier_blob(mask, torch.Generator().manual_seed(2)))


def test_parts_are_8_connected_components() -> None:
    """Hand-checked boxes: separate parts, a diagonal touch (one part), a ring (one part, hole ignored)."""
    mask = np.zeros((40, 60), dtype=bool)
    mask[2:6, 3:9] = True  # a rectangle
    mask[2:4, 20:22] = mask[4:6, 22:24] = True  # two squares touching at a corner: one part
    mask[10:20, 30:50] = True
    mask[13:17, 35:45] = False  # a ring
    mask[30, 5] = True  # one pixel
    assert part_boxes(mask) == [(3, 2, 6, 4), (20, 2, 4, 4), (30, 10, 20, 10), (5, 30, 1, 1)]
    assert part_boxes(np.zeros((5, 5), dtype=bool)) == []


def released_blob(boxes: list[tuple[int, int, int, int]], height: int, width: int, rng: random.Random) -> np.ndarray:
    """An independent implementation of the released `extend_mask_with_bezier` for known part boxes.

    r and the jitter width drawn as its call in train.py draws them; Python's own random, not torch's.
    """
    r, jitter = rng.randint(1, 10) / 10.0, rng.randint(1, 20)
    canvas = Image.new("L", (width, height), 0)
    for x, y, w, h in boxes:
        ext = [
            max(0, x - int(r * w)),
            max(0, y - int(r * h)),
            min(width, x + w + int(r * w)),
            min(height, y + h + int(r * h)),
        ]
        curves = [
            [(x, y), ((x + x + w) // 2, ext[1]), (x + w, y)],
            [(x + w, y), (ext[2], (y + y + h) // 2), (x + w, y + h)],
            [(x + w, y + h), ((x + x + w) // 2, ext[3]), (x, y + h)],
            [(x, y + h), (ext[0], (y + y + h) // 2), (x, y)],
        ]
        points = []
        for (x0, y0), (x1, y1), (x2, y2) in curves:
            for i in range(1, 20):
                t = i * 0.05
                px = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * x1 + t**2 * x2
                py = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * y1 + t**2 * y2
                points.append((int(px + rng.randint(-jitter, jitter)), int(py + rng.randint(-jitter, jitter))))
        ImageDraw.Draw(canvas).polygon(points, fill=255)
    return np.asarray(canvas) > 127


AREA_CASES = {
    "3:1 object": [(85, 135, 150, 50)],
    "two separate parts": [(40, 130, 60, 60), (220, 130, 60, 60)],
}


@pytest.mark.parametrize("case", AREA_CASES)
def test_blob_area_follows_the_released_rule(case: str) -> None:
    """Blob area ÷ the whole mask's box area, over 300 draws, against the independent released rule."""
    side, boxes, draws = 320, AREA_CASES[case], 300
    mask = torch.zeros(side, side)
    for x, y, w, h in boxes:
        mask[y : y + h, x : x + w] = 1
    left, top, right, bottom = mask_bbox(mask)
    box_area = (right - left) * (bottom - top)
    ours = np.array([float(bezier_blob(mask, torch.Generator().manual_seed(s)).sum()) / box_area for s in range(draws)])
    rng = random.Random(0)
    theirs = np.array([released_blob(boxes, side, side, rng).sum() / box_area for _ in range(draws)])
    summary = {
        name: np.percentile(v, [10, 50, 90]).round(2).tolist() for name, v in (("ours", ours), ("released", theirs))
    }
    print(f"{case}: mean ours {ours.mean():.3f} released {theirs.mean():.3f}; 10/50/90 % {summary}")
    assert abs(ours.mean() - theirs.mean()) < 0.08
    assert abs(np.median(ours) - np.median(theirs)) < 0.1


@pytest.mark.parametrize(("top", "left", "bottom", "right"), [(100, 90, 140, 150), (92, 100, 149, 141)])
def test_blob_is_centred_on_the_box_on_average(top: int, left: int, bottom: int, right: int) -> None:
    """Nothing in the augmentation favours a side: over 300 draws the blob's centroid is the box's centre, and it
    bulges beyond the box as far left as right and as far up as down, each within about a pixel (a 60x40 and an odd
    41x57 box, far enough from the edges that no control point is clamped)."""
    mask = box_mask(240, 240, top, left, bottom, right)
    centre_x, centre_y = (left + right - 1) / 2, (top + bottom - 1) / 2  # the middle of the box's pixels
    draws = []
    for seed in range(300):
        rows, cols = bezier_blob(mask, torch.Generator().manual_seed(seed)).nonzero(as_tuple=True)
        bulges = [left - cols.min(), cols.max() - (right - 1), top - rows.min(), rows.max() - (bottom - 1)]
        draws.append([cols.double().mean() - centre_x, rows.double().mean() - centre_y, *bulges])
    mean = torch.tensor(draws, dtype=torch.float64).mean(0)
    print("centroid offset x, y; bulge left, right, top, bottom:", mean.round(decimals=2).tolist())
    assert mean[:2].abs().max() <= 1.0
    assert abs(mean[2] - mean[3]) <= 1.0 and abs(mean[4] - mean[5]) <= 1.0
    assert mean[2:].min() > 10  # it does bulge: the comparison is not of two zeros


def test_empty_mask_gives_whole_image() -> None:
    assert torch.equal(bezier_blob(torch.zeros(32, 48), torch.Generator().manual_seed(0)), torch.ones(32, 48))


def test_part_outline_is_four_quadratic_curves_through_the_box_corners() -> None:
    """Box x 10, y 10, 31 x 41 in a 50 x 60 image, r 0.5: the control points sit r x the box's extent outside the
    middle of each side (int(0.5 * 41) = 20 above and below, int(0.5 * 31) = 15 left and right), clamped to the
    image (top -10 -> 0, bottom 71 -> 60, left -5 -> 0, right 56 -> 50), at the side's middle (25 or 30, floored)."""
    t = np.asarray(CURVE_T)[:, None]

    def curve(start, control, end) -> np.ndarray:
        return (1 - t) ** 2 * np.asarray(start) + 2 * (1 - t) * t * np.asarray(control) + t**2 * np.asarray(end)

    expected = np.concatenate(
        [
            curve((10, 10), (25, 0), (41, 10)),
            curve((41, 10), (50, 30), (41, 51)),
            curve((41, 51), (25, 60), (10, 51)),
            curve((10, 51), (0, 30), (10, 10)),
        ]
    )
    np.testing.assert_array_equal(part_outline((10, 10, 31, 41), 0.5, 50, 60), expected)


def test_loss_weights_are_2_25_inside_and_0_36_outside() -> None:
    prediction = torch.ones(1, 4, 2, 2)
    target = torch.zeros(1, 4, 2, 2)
    inside = torch.ones(1, 1, 2, 2)
    assert weighted_loss(prediction, target, inside).item() == pytest.approx(2.25)
    assert weighted_loss(prediction, target, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0.36)
    half = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert weighted_loss(prediction, target, half).item() == pytest.approx((2.25 + 0.36) / 2)
    # squared error scales with the difference: diff 2 inside -> 4 * 2.25
    assert weighted_loss(prediction * 3, target + 1, inside).item() == pytest.approx(9.0)


def test_latent_mask_is_max_pooled() -> None:
    pixel = torch.zeros(1, 1, 16, 16)
    pixel[0, 0, 9, 2] = 1  # one pixel marks its whole 8x8 latent cell
    pooled = latent_mask(pixel, (2, 2))
    assert pooled.tolist() == [[[[0.0, 0.0], [1.0, 0.0]]]]
    assert latent_mask(pixel[:, 0], (2, 2)).shape == (1, 1, 2, 2)


def photos(count: int, sizes: list[tuple[int, int]], prompt: int) -> list[Photo]:
    out = []
    for i in range(count):
        height, width = sizes[i % len(sizes)]
        image = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(i))
        out.append(Photo(image, box_mask(height, width, height // 4, width // 3, height // 2, width // 2), prompt))
    return out


def test_expand_copies_shapes_and_determinism() -> None:
    subject = photos(3, [(300, 200), (128, 256), (400, 400)], 0)
    regular = photos(2, [(256, 256)], 1)
    copies = expand(subject, regular, 128, seed=5)
    assert len(copies) == 3 * 10 + 2 * 3
    assert [c.regular for c in copies] == [False] * 30 + [True] * 6
    for copy in copies:
        assert copy.image.shape == (3, 128, 128) and copy.mask.shape == (1, 128, 128)
        assert 0 <= copy.image.min() and copy.image.max() <= 1
        assert copy.mask.sum() > 0
    again = expand(subject, regular, 128, seed=5)
    assert all(torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask) for a, b in zip(copies, again))
    other = expand(subject, regular, 128, seed=6)
    assert any(not torch.equal(a.mask, b.mask) for a, b in zip(copies, other))
    # subject crops keep the object's box: each subject copy's blob contains its object's centre region
    assert all(mask_bbox(c.mask[0]) is not None for c in copies[:30])


def test_expand_refuses_empty_subject_mask_and_bad_resolution() -> None:
    image = torch.rand(64, 64, 3)
    empty = (
        "The mask of subject photo 1 is empty: the mask must be 1 on the subject (connect a segmentation mask, or "
        "invert LoadImage's alpha mask)."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(empty) + "$"):
        expand([Photo(image, torch.zeros(64, 64), 0)], [], 64, seed=0)
    resolution = "The training resolution must be a multiple of 64 of at least 64, got 100."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(resolution) + "$"):
        expand([Photo(image, torch.ones(64, 64), 0)], [], 100, seed=0)
    mismatched = "subject photo 1: the mask is 64×32 but the image is 64×64; give each photo a mask of its own size."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(mismatched) + "$"):
        expand([Photo(image, torch.ones(32, 64), 0)], [], 64, seed=0)


def test_masked_image_fills_half_grey() -> None:
    image, mask = torch.ones(3, 4, 4), torch.zeros(1, 4, 4)
    mask[..., :2] = 1
    out = masked_image(image, mask)
    assert out[..., :2].eq(0.5).all() and out[..., 2:].eq(1).all()


def test_sampling_proportions() -> None:
    sampler = MixSampler(subject_count=40, regular_count=90, regular_probability=0.3)
    draws = torch.tensor([sampler.draw(step_generator(0, i)) for i in range(20000)])
    regular = (draws >= 40).float().mean().item()
    print(f"regular share {regular:.4f}")
    assert regular == pytest.approx(0.3, abs=0.015)
    counts = torch.bincount(draws[draws < 40], minlength=40).float()
    assert counts.min() > 0.7 * counts.mean()  # uniform within the subject group
    assert all(MixSampler(5, 0).draw(step_generator(1, i)) < 5 for i in range(200))  # no regular data: subject only


class TinyDenoiser(torch.nn.Module):
    """eps = conv(x_t) with a trainable low-rank-ish weight; enough to exercise the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)


def run_loop(tmp_path, steps: int, interrupt_at: int | None = None, folder: str = "ckpt", every: int = 2):
    torch.manual_seed(0)
    model = TinyDenoiser()
    latents = [torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    masks = [torch.ones(1, 8, 8) for _ in latents]
    examples = [Example(tuple(latent.shape), mask) for latent, mask in zip(latents, masks)]
    calls = {"n": 0}

    def predict(index: int, noise: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        level = (t + 1) / 11  # a DDPM-like variance-preserving schedule over 10 timesteps
        x_t = latents[index][None] * (1 - level) ** 0.5 + noise * level**0.5
        return model.conv(x_t), noise

    def check() -> None:
        calls["n"] += 1
        if interrupt_at is not None and calls["n"] > interrupt_at:
            raise KeyboardInterrupt

    settings = LoopSettings(
        steps=steps, learning_rate=2e-2, grad_accumulation=2, checkpoint_every=every, seed=3, num_timesteps=10
    )
    params = dict(model.named_parameters())
    result = train(params, examples, MixSampler(4, 2), predict, settings, "run", str(tmp_path / folder), check)
    return model, result


def test_loop_learns_and_resumes_exactly(tmp_path) -> None:
    reference, result = run_loop(tmp_path, 40, folder="a")
    print("loop losses", [round(v, 4) for v in result.losses])
    assert len(result.losses) == 40 and sum(result.losses[-10:]) < 0.8 * sum(result.losses[:10])
    with pytest.raises(KeyboardInterrupt):
        run_loop(tmp_path, 40, interrupt_at=11, folder="b")  # stopped in optimizer step 6: last checkpoint 4
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [f"step_00000{k}.state" for k in (2, 4)]
    resumed, result = run_loop(tmp_path, 40, folder="b")
    assert result.resumed_from == 4 and len(result.losses) == 40
    for (name, a), b in zip(reference.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("every", [0, 3])
def test_the_finished_state_is_always_kept(tmp_path, every: int) -> None:
    """Without checkpoints on the way (0) or with a last step off the interval (3 of 5), the last step is saved,
    and running again resumes there: nothing is trained twice and the parameters come back unchanged."""
    trained, result = run_loop(tmp_path, 5, folder="end", every=every)
    names = sorted(p.name for p in (tmp_path / "end").iterdir())
    assert names == (["step_000005.state"] if every == 0 else ["step_000003.state", "step_000005.state"])
    again, rerun = run_loop(tmp_path, 5, folder="end", every=every)
    assert rerun.resumed_from == 5 and rerun.losses == result.losses
    assert all(torch.equal(a, b) for a, b in zip(trained.parameters(), again.parameters()))


def resume_into(folder, run_id: str) -> None:
    """Three steps of a one-example run that resumes from whatever `folder` holds."""
    model = TinyDenoiser()
    train(
        dict(model.named_parameters()),
        [Example((4, 8, 8), torch.ones(1, 8, 8))],
        MixSampler(1, 0),
        lambda i, n, t: model.conv(n),
        LoopSettings(steps=3, grad_accumulation=1),
        run_id,
        str(folder),
    )


def test_loop_refuses_other_runs_checkpoints(tmp_path) -> None:
    run_loop(tmp_path, 2, folder="c")
    expected = (
        f"{tmp_path / 'c'} holds checkpoints of a different training run (other images, prompts or settings): use "
        "another LoRA name, or delete that folder to start over."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        resume_into(tmp_path / "c", "other")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path) -> None:
    """An older pickle checkpoint (torch.save) is refused with a message, never unpickled."""
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({"step": 2}, folder / "step_000002.state")
    expected = (
        f"{folder / 'step_000002.state'} is not a training checkpoint this version can read (an older version's, "
        "or damaged): delete its folder to start the run over, or train under another LoRA name."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        resume_into(folder, "run")


def test_gradient_checkpointing_gives_same_gradients() -> None:
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 8))
    x = torch.randn(3, 8)
    block(x).square().sum().backward()
    plain = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    with training_blocks([block], recompute=True):
        assert "forward" in vars(block)
        block(x).square().sum().backward()
    assert "forward" not in vars(block)
    assert all(torch.allclose(a, p.grad) for a, p in zip(plain, block.parameters()))


def test_moving_average_by_hand() -> None:
    """Ten values: the window is a fifth of the run (2); a hundred: capped at `smooth`."""
    assert moving_average([float(v) for v in range(1, 11)]) == [1.0, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]
    assert moving_average([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    ramp = moving_average([float(v) for v in range(100)], smooth=4)
    assert ramp[:4] == [0.0, 0.5, 1.0, 1.5] and ramp[99] == (96 + 97 + 98 + 99) / 4


def _near(image: Image.Image, x: int, y: int, colour: tuple[int, int, int], reach: int = 2) -> bool:
    pixels = np.asarray(image)[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1].reshape(-1, 3)
    return bool((np.abs(pixels.astype(int) - colour).sum(axis=1) < 40).any())


def test_loss_curve_draws_the_steps_from_top_left_to_bottom_right() -> None:
    """Losses 1 → 0 over two steps: the dark line runs from (20, 20) to (492, 236) inside 20-pixel margins."""
    dark, white = (20, 60, 160), (255, 255, 255)
    image = loss_curve_image([1.0, 0.0])
    assert image.size == (512, 256)
    for x, y in ((20, 20), (256, 128), (492, 236)):
        assert _near(image, x, y, dark), (x, y)
    assert not _near(image, 256, 60, dark, reach=10) and _near(image, 400, 40, white)
    single = loss_curve_image([0.3])
    assert _near(single, 20, 236, dark) and not _near(single, 256, 128, dark, reach=20)
    empty = np.asarray(loss_curve_image([]))
    assert empty.shape == (256, 512, 3) and (empty < 128).any() and (empty[:100] == 255).all()


def test_background_difference_mask() -> None:
    from dreammix_core.training.data import background_difference_mask

    # 100x120: closing radius round(0.02 * 100) = 2. An object over 60 % of the image (the background is the frame's
    # colour, not the image's), 0.16 from the background in every channel (RGB distance / √3 = 0.16 > 0.15), with a
    # 4 px stripe of background the closing fills; a patch 0.10 away (< 0.15) is background.
    image = torch.full((100, 120, 3), 0.5)
    image[10:90, 10:110] += 0.16
    image[10:90, 50:54] = 0.5
    image[94:98, 2:6] = 0.6
    expected = torch.zeros(100, 120)
    expected[10:90, 10:110] = 1
    assert torch.equal(background_difference_mask(image), expected)
    # 40x50: radius 1 closes gaps up to 2 px, so a 3 px stripe stays background.
    small = torch.full((40, 50, 3), 0.2)
    small[8:32, 8:42] = 0.9
    small[8:32, 20:23] = 0.2
    expected = torch.zeros(40, 50)
    expected[8:32, 8:20] = expected[8:32, 23:42] = 1
    assert torch.equal(background_difference_mask(small), expected)
    # nothing found on a flat image: the centred ellipse over half the height and width, at pixel centres (by hand
    # for 8x12: rows 2 and 5 hold |x| <= 0.66 of the semi-axis, rows 3 and 4 hold |x| <= 0.97)
    ellipse = torch.zeros(8, 12)
    ellipse[2, 4:8] = ellipse[5, 4:8] = 1
    ellipse[3, 3:9] = ellipse[4, 3:9] = 1
    assert torch.equal(background_difference_mask(torch.full((8, 12, 3), 0.5)), ellipse)


def test_loop_step_is_adamw_on_the_weighted_loss_averaged_over_micro_steps() -> None:
    """One parameter tensor w is the prediction (plus the example's index). The reported losses, the gradient
    accumulated between micro-steps and the parameters after two steps are recomputed here from what the
    loop handed `predict`, with weights 2.0 / 0.5 and torch's own AdamW as the reference optimiser. The target
    `predict` returns (twice the noise, not the noise itself) is what the loss compares the prediction with."""
    masks = [torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])]
    examples = [Example((2, 2, 2), mask) for mask in masks]
    w = torch.nn.Parameter(torch.full((1, 2, 2, 2), 0.1))
    calls: list[tuple] = []

    def predict(index: int, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append((index, noise.clone(), timestep, None if w.grad is None else w.grad.clone(), w.detach().clone()))
        return w + index, 2 * noise

    reported: list[tuple] = []
    settings = LoopSettings(
        steps=2, learning_rate=0.1, weight_decay=0.5, grad_accumulation=3, seed=4, num_timesteps=50,
        inside_weight=2.0, outside_weight=0.5, checkpoint_every=0,
    )  # fmt: skip
    result = train({"w": w}, examples, MixSampler(1, 1, 0.5), predict, settings, on_step=lambda *a: reported.append(a))

    reference = torch.nn.Parameter(torch.full((1, 2, 2, 2), 0.1))
    optimiser = torch.optim.AdamW([reference], lr=0.1, weight_decay=0.5)
    expected_losses = []
    for step in range(2):
        grad, losses = torch.zeros_like(reference), []
        for micro in range(3):
            index, noise, timestep, seen_grad, seen_w = calls[3 * step + micro]
            assert torch.allclose(seen_w, reference.detach(), atol=1e-6) and 0 <= timestep < 50
            assert (seen_grad is None) if micro == 0 else torch.allclose(seen_grad, grad, atol=1e-7)
            weight = 0.5 + 1.5 * masks[index]
            error = reference.detach() + index - 2 * noise
            losses.append(float(((error * weight) ** 2).mean()))
            grad += 2 * weight**2 * error / error.numel() / 3
        reference.grad = grad
        optimiser.step()
        expected_losses.append(sum(losses) / 3)
    assert {call[0] for call in calls} == {0, 1}, "both examples drawn"
    assert len({call[2] for call in calls}) > 1 and len({float(call[1].sum()) for call in calls}) == 6
    assert result.losses == pytest.approx(expected_losses, rel=1e-6)
    assert reported == [
        (1, 2, pytest.approx(expected_losses[0], rel=1e-6)),
        (2, 2, pytest.approx(expected_losses[1], rel=1e-6)),
    ]
    assert torch.allclose(w, reference, atol=1e-6) and result.step == 2


def test_gradient_checkpointing_recomputes_the_forward_in_backward() -> None:
    """Checkpointed, each block's forward runs twice per backward (once more to rebuild activations); not, once."""
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 8))
    runs = []
    block[0].register_forward_hook(lambda *_: runs.append(1))
    x = torch.randn(3, 8, requires_grad=True)
    for enabled, expected in ((True, 2), (False, 1)):
        runs.clear()
        with training_blocks([block], recompute=enabled):
            block(x).square().sum().backward()
        assert len(runs) == expected, enabled
    runs.clear()
    with training_blocks([block], recompute=True), torch.no_grad():
        block(x)
    assert len(runs) == 1


class AddsIntoItsInput(torch.nn.Module):
    """ComfyUI's FLUX single block in miniature: a norm saves the input for backward, then `x += ...` changes it."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(8, elementwise_affine=False)
        self.linear1, self.linear2 = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
        self.in_place = in_place

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        update = self.linear1(self.norm(x) * (1 + vec))
        if not self.in_place:
            x = x + update
            return x + self.linear2(self.norm(x))
        x += update
        x += self.linear2(self.norm(x))
        return x


@pytest.mark.parametrize("recompute", [False, True])
def test_blocks_that_add_into_their_input_get_the_out_of_place_gradients(recompute: bool) -> None:
    """Two such blocks after a frozen input (as a DiT's first block, whose input needs no gradient): trained
    through `training_blocks`, their linear layers get the gradients of the same blocks written out of place,
    and the caller's input is what it was when recomputation reruns the forward."""

    def gradients(in_place: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        blocks = [AddsIntoItsInput(in_place) for _ in range(2)]
        for block in blocks:
            block.norm.requires_grad_(False)
        x, vec = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1)), torch.full((8,), 0.5)
        with training_blocks(blocks, recompute=recompute and in_place):
            for block in blocks:
                x = block(x, vec=vec)
            x.square().sum().backward()
        return [p.grad for block in blocks for p in (block.linear1.weight, block.linear2.bias)]

    expected = gradients(in_place=False)
    for got, want in zip(gradients(in_place=True), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def column_photo(subject_columns: tuple[int, int], height: int = 64, width: int = 256) -> Photo:
    """Red channel = column / width, so a crop's left edge can be read back from its pixels."""
    image = (torch.arange(width).float() / width)[None, :, None].expand(height, width, 3).clone()
    return Photo(image, box_mask(height, width, 10, subject_columns[0], 50, subject_columns[1]), prompt=0)


def crop_lefts(copies) -> list[int]:
    return [round(float(copy.image[0, 0, 0]) * 256) for copy in copies]


def test_subject_copies_keep_the_subject_and_regular_copies_crop_anywhere() -> None:
    """A 64x256 photo at resolution 64 needs no resize: a subject at columns 200–240 forces left ∈ [176, 200]."""
    photo = column_photo((200, 240))
    copies = expand([photo], [photo], 64, seed=3, subject_copies=12, regular_copies=12)
    subject, regular = copies[:12], copies[12:]
    assert [c.regular for c in copies] == [False] * 12 + [True] * 12
    lefts = crop_lefts(subject)
    assert all(176 <= left <= 200 for left in lefts) and len(set(lefts)) > 3
    for copy, left in zip(subject, lefts):
        assert torch.equal(copy.image, photo.image[:, left : left + 64].permute(2, 0, 1))
        blob_box, subject_box = mask_bbox(copy.mask[0]), (200 - left, 10, 240 - left, 50)
        assert blob_box[0] <= subject_box[0] and blob_box[1] <= subject_box[1]
        assert blob_box[2] >= subject_box[2] and blob_box[3] >= subject_box[3]
    assert min(crop_lefts(regular)) < 150


def test_a_subject_wider_than_the_crop_is_centred() -> None:
    copies = expand([column_photo((20, 200))], [], 64, seed=1, subject_copies=4)
    assert crop_lefts(copies) == [(20 + 200 - 64) // 2] * 4


def test_photos_are_resized_to_the_short_side_with_antialiasing() -> None:
    """A 96x48 fine checkerboard at side 20 becomes 40x20 of flat grey (without antialiasing a pattern stays)."""
    board = ((torch.arange(96)[:, None] + torch.arange(48)[None]) % 2).float()
    photo = Photo(board[..., None].expand(96, 48, 3), box_mask(96, 48, 40, 20, 60, 30), prompt=0)
    image, mask = resize_short_side(photo.image, photo.mask, 20)
    assert image.shape == (3, 40, 20) and mask.shape == (1, 40, 20)
    assert (image - 0.5).abs().max() < 0.05
    left, top, right, bottom = mask_bbox(mask[0])  # the box scaled by 20/48: 8.3, 16.7, 12.5, 25
    assert abs(left - 8.3) <= 1 and abs(top - 16.7) <= 1 and abs(right - 12.5) <= 1 and abs(bottom - 25) <= 1


def test_subject_copies_keep_the_subject_vertically_too() -> None:
    """The column photo turned on its side: a subject at rows 200–240 of a 256x64 photo forces top ∈ [176, 200]."""
    photo = column_photo((200, 240))
    tall = Photo(photo.image.transpose(0, 1).contiguous(), photo.mask.transpose(0, 1).contiguous(), prompt=0)
    copies = expand([tall], [], 64, seed=5, subject_copies=12)
    tops = [round(float(copy.image[0, 0, 0]) * 256) for copy in copies]
    assert all(176 <= top <= 200 for top in tops) and len(set(tops)) > 3


def test_regular_copies_are_drawn_when_the_probability_is_one() -> None:
    assert {MixSampler(2, 1, 1.0).draw(step_generator(0, i)) for i in range(50)} == {2}
    assert {MixSampler(2, 3, 0.0).draw(step_generator(0, i)) for i in range(50)} <= {0, 1}


def test_fingerprint_follows_what_decides_the_result() -> None:
    """Same recipe and inputs, same id (whatever the checkpoint interval or the order extras are given in);
    any setting or input that changes the trajectory, another id."""
    from dataclasses import replace

    from dreammix_core.training.loop import fingerprint

    base = LoopSettings(steps=10)
    run = fingerprint(base, images="abc", prompt="a sks dog")
    assert len(run) == 16 and int(run, 16) >= 0
    assert fingerprint(replace(base, checkpoint_every=7), prompt="a sks dog", images="abc") == run
    others = [
        fingerprint(replace(base, learning_rate=2e-4), images="abc", prompt="a sks dog"),
        fingerprint(replace(base, steps=11), images="abc", prompt="a sks dog"),
        fingerprint(base, images="abd", prompt="a sks dog"),
        fingerprint(base, images="abc"),
    ]
    assert run not in others and len(set(others)) == len(others)


def test_fingerprint_hashes_extras_json_cannot_encode_by_their_text() -> None:
    """An extra JSON has no encoding for (a dtype) is hashed as its str: no TypeError, and another dtype, another id."""
    from dreammix_core.training.loop import fingerprint

    base = LoopSettings(steps=10)
    half = fingerprint(base, dtype=torch.float16)
    assert half == fingerprint(base, dtype="torch.float16")
    assert half != fingerprint(base, dtype=torch.float32)


def test_tensor_digest_is_sha256_of_the_shapes_and_float32_values() -> None:
    """Recomputed with hashlib: each tensor's shape tuple as text, then its float32 bytes; the first 16 hex digits.
    The same values in another shape give another digest."""
    import hashlib

    from dreammix_core.training.loop import tensor_digest

    a, b = torch.arange(6, dtype=torch.float64).reshape(2, 3), torch.ones(1, dtype=torch.int64)
    expected = hashlib.sha256()
    for shape, values in (("(2, 3)", [0, 1, 2, 3, 4, 5]), ("(1,)", [1])):
        expected.update(shape.encode())
        expected.update(np.asarray(values, dtype=np.float32).tobytes())
    assert tensor_digest([a], [b]) == expected.hexdigest()[:16]
    assert tensor_digest([a.reshape(3, 2)], [b]) != tensor_digest([a], [b])


def test_run_fingerprint_follows_the_side_the_copy_counts_and_the_masks() -> None:
    """Each input of a subject-LoRA run is part of its identity: the same copies at another side, with other copy
    counts, or with other masks over the same images, are another run."""
    from dreammix_core.training.data import Copy
    from dreammix_core.training.loop import run_fingerprint

    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    copies = [Copy(image, box_mask(8, 8, 2, 2, 6, 6)[None], 0, False)]
    other_masks = [Copy(image, box_mask(8, 8, 1, 2, 6, 6)[None], 0, False)]
    recipe = {"rank": 4, "alpha": 4.0, "targets": "attention", "regular_probability": 0.0}

    def run_id(copies=copies, side=8, copy_counts=(1, 0)) -> str:
        return run_fingerprint(LoopSettings(), copies, ["a sks dog"], side, copy_counts=copy_counts, **recipe)

    ids = [run_id(), run_id(side=16), run_id(copy_counts=(2, 0)), run_id(copies=other_masks)]
    assert len(set(ids)) == 4 and run_id() == ids[0]


def test_a_folder_without_checkpoints_has_no_latest(tmp_path) -> None:
    """A folder holding only other files (and an empty one) has no latest checkpoint: None, not an error."""
    from dreammix_core.training.loop import latest_checkpoint

    assert latest_checkpoint(str(tmp_path)) is None
    (tmp_path / "step_000002.state.tmp").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert latest_checkpoint(str(tmp_path)) is None


def test_a_checkpoint_loads_back_as_it_was_saved(tmp_path) -> None:
    """Every part of the state comes back: parameters and optimizer entries whose names hold '/', optimizer
    tensors per parameter index, and non-tensor optimizer entries (an optimizer keeping its step as an int; SGD's
    momentum_buffer None, alone in its parameter's state)."""
    from dreammix_core.training.loop import load_checkpoint, save_checkpoint

    params = {"unet/down.lora_A": torch.arange(6.0).reshape(2, 3), "te.lora_B": torch.ones(3)}
    groups = [{"lr": 0.1, "weight_decay": 0.5, "params": [0, 1]}]
    optimizer = {
        "state": {
            0: {"step": 7, "exp_avg": torch.full((2, 3), 0.25), "ema/slow": torch.zeros(2, 3)},
            1: {"step": 3, "exp_avg": torch.full((3,), -1.0), "note/kind": "sketch"},
            2: {"momentum_buffer": None},
        },
        "param_groups": groups,
    }
    state = {"step": 12, "losses": [0.5, 0.25], "run_id": "abc", "params": params, "optimizer": optimizer}
    loaded = load_checkpoint(save_checkpoint(str(tmp_path), state))
    assert (loaded["step"], loaded["losses"], loaded["run_id"]) == (12, [0.5, 0.25], "abc")
    assert loaded["params"].keys() == params.keys()
    assert all(torch.equal(loaded["params"][name], value) for name, value in params.items())
    assert loaded["optimizer"]["param_groups"] == groups
    got = loaded["optimizer"]["state"]
    assert got.keys() == {0, 1, 2}
    for index, entry in optimizer["state"].items():
        assert got[index].keys() == entry.keys(), index
        for key, value in entry.items():
            assert torch.equal(got[index][key], value) if torch.is_tensor(value) else got[index][key] == value


def test_micro_step_randomness_depends_only_on_the_micro_step_index() -> None:
    """Example, noise and timestep of the k-th micro-step are the same whether micro-steps are grouped two to an
    optimizer step or one: they come from (seed, k) only."""

    def draws(steps: int, accumulation: int) -> list[tuple]:
        w = torch.nn.Parameter(torch.zeros(1, 2, 2, 2))
        calls: list[tuple] = []

        def predict(index: int, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
            calls.append((index, noise.clone(), timestep))
            return w + index, noise

        examples = [Example((2, 2, 2), torch.ones(1, 2, 2)) for _ in range(3)]
        settings = LoopSettings(steps=steps, grad_accumulation=accumulation, seed=9, num_timesteps=1000)
        train({"w": w}, examples, MixSampler(3, 0), predict, settings)
        return calls

    grouped, single = draws(3, 2), draws(6, 1)
    assert [(i, t) for i, _, t in grouped] == [(i, t) for i, _, t in single]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(grouped, single, strict=True))
    assert len({t for _, _, t in single}) > 1


def test_running_a_finished_run_again_writes_nothing(tmp_path) -> None:
    """The finished state is saved once: a second run of the same recipe resumes at the end and leaves the
    checkpoint file as it was (the same file, not a rewrite)."""
    run_loop(tmp_path, 3, folder="done", every=0)
    path = tmp_path / "done" / "step_000003.state"
    before = path.stat()
    run_loop(tmp_path, 3, folder="done", every=0)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["step_000003.state"]


def test_the_default_run_id_is_empty(tmp_path) -> None:
    """A run trained without a run id stores the empty id, so it resumes under the empty id."""
    from dreammix_core.training.loop import latest_checkpoint, load_checkpoint

    model = TinyDenoiser()
    settings = LoopSettings(steps=1, grad_accumulation=1, checkpoint_every=0)
    examples = [Example((4, 8, 8), torch.ones(1, 8, 8))]
    train(dict(model.named_parameters()), examples, MixSampler(1, 0), lambda i, n, t: (model.conv(n), n), settings,
          checkpoint_folder=str(tmp_path))  # fmt: skip
    assert load_checkpoint(latest_checkpoint(str(tmp_path)))["run_id"] == ""


def test_recomputed_blocks_raise_no_warning() -> None:
    """Recomputation names torch's reentrant checkpoint explicitly, so torch warns about nothing."""
    import warnings

    block = torch.nn.Linear(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with training_blocks([block], recompute=True):
            block(torch.randn(2, 4)).sum().backward()
    assert block.weight.grad is not None


def test_moving_average_window_is_capped_at_twenty_by_default() -> None:
    """Two hundred values 0..199: a fifth would be 40, the default cap 20, so the last mean is of 180..199."""
    assert moving_average([float(v) for v in range(200)])[-1] == sum(range(180, 200)) / 20


def test_loss_curve_scales_between_the_lowest_and_highest_loss() -> None:
    """Losses 4, 3, 2 (lowest 2, not 0; range 2, not 1): the dark line runs from (20, 20) through (256, 128) to
    (492, 236)."""
    dark = (20, 60, 160)
    image = loss_curve_image([4.0, 3.0, 2.0])
    for x, y in ((20, 20), (256, 128), (492, 236)):
        assert _near(image, x, y, dark), (x, y)
    assert not _near(image, 256, 60, dark, reach=10) and not _near(image, 256, 200, dark, reach=10)


def test_a_single_loss_is_a_round_dot_of_radius_two() -> None:
    """One step: a filled dot centred at (20, 236) reaching two pixels left, right, up and down, and nothing else."""
    image = np.asarray(loss_curve_image([0.3]))
    drawn = np.argwhere((image[60:240] != 255).any(axis=-1)) + [60, 0]
    assert {(int(y), int(x)) for y, x in drawn} >= {(236, 19), (236, 21), (235, 20), (237, 20), (236, 20)}
    assert drawn[:, 0].min() >= 233 and drawn[:, 0].max() <= 239 and drawn[:, 1].min() >= 17
    assert drawn[:, 1].max() <= 23


def _text_rows(text: str, position: tuple[int, int], rows: slice, size=(512, 256)) -> np.ndarray:
    """The rows `rows` of a white canvas with `text` drawn in black at `position` by PIL's default font."""
    canvas = Image.new("RGB", size, "white")
    ImageDraw.Draw(canvas).text(position, text, fill="black")
    return np.asarray(canvas)[rows]


def test_loss_curve_labels_say_max_min_steps_and_last_average() -> None:
    """The top label is the highest loss at (4, 2), the bottom one the lowest, the step count and the last moving
    average (of the last 20 of 200 steps by default, of the given `smooth`) at (4, height - 14)."""
    losses = [float(v) for v in range(200)]
    image = np.asarray(loss_curve_image(losses))
    top, bottom = slice(0, 17), slice(240, 256)
    assert np.array_equal(image[top], _text_rows("max 199.0000", (4, 2), top))
    assert np.array_equal(image[bottom], _text_rows("min 0.0000   steps 200   last 189.5000", (4, 242), bottom))
    tall = np.asarray(loss_curve_image([1.0, 3.0, 2.0, 4.0, 1.0, 3.0, 2.0, 4.0, 1.0, 5.0], height=300, smooth=1))
    rows = slice(284, 300)  # smooth 1: the last average is the last loss, 5 (the default window 2 would give 3)
    expected = _text_rows("min 1.0000   steps 10   last 5.0000", (4, 286), rows, size=(512, 300))
    assert np.array_equal(tall[rows], expected)


def test_an_empty_loss_curve_says_no_steps_trained() -> None:
    """No losses: only 'no steps trained' in black at (10, height // 2) on white (127 for a height of 255)."""
    image = np.asarray(loss_curve_image([], height=255))
    canvas = Image.new("RGB", (512, 255), "white")
    ImageDraw.Draw(canvas).text((10, 127), "no steps trained", fill="black")
    assert np.array_equal(image, np.asarray(canvas))
