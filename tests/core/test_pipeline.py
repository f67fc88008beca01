"""The LCG → GCH orchestration: stage plan with a recording backend, end to end on tiny diffusers models."""

import re
from dataclasses import dataclass, field, replace

import pytest
import torch
from tiny_models import tiny_backend

from dreammix_core.errors import DreamMixInputError
from dreammix_core.inpainting.blend import feather_mask
from dreammix_core.inpainting.pipeline import InpaintSettings, Stage, StageResult, dreammix_inpaint, fresh_seed


@dataclass
class RecordingBackend:
    """Encodes by average pooling and 'denoises' to a seed-dependent constant; records each stage."""

    spatial_factor: int = 8
    stages: list[Stage] = field(default_factory=list)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), self.spatial_factor)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(latent, scale_factor=self.spatial_factor).movedim(1, -1)

    def denoise(self, stage: Stage) -> StageResult:
        self.stages.append(stage)
        value = torch.full_like(stage.latent, (stage.seed % 100) / 100)
        return StageResult(latent=value, denoised=value)


def scene(height: int = 180, width: int = 260) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(7))
    mask = torch.zeros(1, height, width)
    mask[:, 60:110, 90:170] = 1
    return image, mask


def test_stage_plan_follows_the_switch() -> None:
    backend = RecordingBackend()
    image, mask = scene()
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=30, seed=5, resolution=256))
    local, harmonise = backend.stages
    assert (local.name, local.start, local.end, local.steps, local.seed) == ("local", 0, 20, 30, 5)
    assert (harmonise.name, harmonise.start, harmonise.end, harmonise.seed) == ("global", 20, 30, fresh_seed(5))
    assert local.pixels.shape[1] * local.pixels.shape[2] == pytest.approx(256**2, rel=0.5)
    assert harmonise.pixels.shape[1:3] == (184, 264) and harmonise.mask.shape == (1, 184, 264)


def test_lambda_zero_is_local_generation_only() -> None:
    backend = RecordingBackend()
    image, mask = scene()
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=12, lam=0.0, resolution=256))
    assert [(s.name, s.start, s.end) for s in backend.stages] == [("local", 0, 12)]


def test_lambda_one_is_a_plain_full_image_inpaint() -> None:
    backend = RecordingBackend()
    image, mask = scene(176, 256)
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=12, lam=1.0, resolution=256))
    (stage,) = backend.stages
    assert (stage.name, stage.start, stage.end) == ("global", 0, 12)
    assert torch.equal(stage.pixels, image) and torch.equal(stage.mask, mask)


def test_tiny_sdxl_inpaint_keeps_background_bit_exact_and_size() -> None:
    image, mask = scene(150, 230)
    out = dreammix_inpaint(tiny_backend(), image, mask, InpaintSettings(steps=5, resolution=128, seed=1))
    assert out.shape == image.shape
    outside = feather_mask(mask, 32) == 0
    assert outside.any() and torch.equal(out[outside], image[outside])
    assert not torch.allclose(out[mask.bool()], image[mask.bool()], atol=1e-2)


@pytest.mark.parametrize("inpainting", [True, False])
def test_same_seed_same_output_other_seed_other_output(inpainting: bool) -> None:
    backend = tiny_backend(inpainting)
    image, mask = scene(128, 128)

    def run(seed: int) -> torch.Tensor:
        return dreammix_inpaint(backend, image, mask, InpaintSettings(steps=4, resolution=128, seed=seed))

    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_lambda_ends_on_tiny_sdxl_match_their_definition(lam: float) -> None:
    """λ = 1 runs only the global stage (a plain inpaint), λ = 0 only the local one, on real models."""
    backend = tiny_backend()
    image, mask = scene(128, 128)
    settings = InpaintSettings(steps=4, lam=lam, resolution=128, seed=2)
    calls: list[str] = []
    denoise = backend.denoise
    backend.denoise = lambda stage: calls.append(stage.name) or denoise(stage)
    dreammix_inpaint(backend, image, mask, settings)
    assert calls == (["global"] if lam == 1.0 else ["local"])


def test_whole_image_mask_is_allowed() -> None:
    image = torch.rand(1, 96, 128, 3)
    out = dreammix_inpaint(tiny_backend(), image, torch.ones(1, 96, 128), InpaintSettings(steps=3, resolution=128))
    assert out.shape == image.shape


def test_misaligned_latent_is_refused() -> None:
    image, mask = scene()
    expected = (
        "This model's latent has 48 pixels per cell, which does not divide the crop size multiple 64: DreamMix "
        "supports models with 1, 2, 4, 8, 16, 32 or 64."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        dreammix_inpaint(RecordingBackend(spatial_factor=48), image, mask)


@pytest.mark.parametrize(
    ("lam", "expected"),
    [
        (-0.5, "switch λ must be between 0 (LCG only) and 1 (GCH only), got -0.5."),
        (1.5, "switch λ must be between 0 (LCG only) and 1 (GCH only), got 1.5."),
    ],
)
def test_switch_out_of_range_is_refused(lam: float, expected: str) -> None:
    image, mask = scene()
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        dreammix_inpaint(RecordingBackend(), image, mask, InpaintSettings(lam=lam))


def test_alpha_channel_is_kept() -> None:
    image = torch.rand(1, 160, 160, 4)
    mask = torch.zeros(1, 160, 160)
    mask[:, 70:90, 70:90] = 1
    backend = RecordingBackend()
    out = dreammix_inpaint(backend, image, mask, InpaintSettings(steps=4, resolution=64))
    assert out.shape == image.shape and torch.equal(out[..., 3], image[..., 3])
    assert [stage.pixels.shape[-1] for stage in backend.stages] == [3, 3]  # the model sees RGB in both stages
    assert torch.equal(out[:, :4, :, :3], image[:, :4, :, :3])  # beyond the feather: the original, bit for bit


@dataclass
class HalfDecodingBackend(RecordingBackend):
    """Decodes to fp16, as ComfyUI's VAE does under --fp16-intermediates."""

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return super().decode(latent).half()


@pytest.mark.parametrize("lam", [0.0, 0.333, 1.0])
def test_fp16_host_tensors_give_the_float32_result(lam: float) -> None:
    """ComfyUI's --fp16-intermediates hands fp16 images and masks (CPU torch cannot resize fp16 antialiased)."""
    image, mask = scene()
    image16, mask16 = image.half(), mask.half()
    settings = InpaintSettings(steps=6, lam=lam, resolution=128, seed=3)
    out = dreammix_inpaint(HalfDecodingBackend(), image16, mask16, settings)
    reference = dreammix_inpaint(HalfDecodingBackend(), image16.float(), mask16.float(), settings)
    assert out.dtype == torch.float32 and torch.equal(out, reference)
    outside = feather_mask(mask, 32) == 0
    assert torch.equal(out[outside], image16.float()[outside])


def test_composite_takes_variations_of_one_original_but_not_a_batch_of_another_size() -> None:
    from dreammix_core.inpainting.pipeline import final_composite

    image, mask = scene()
    generated = torch.rand(3, *image.shape[1:])
    out = final_composite(image, generated, mask)
    outside = (feather_mask(mask, 32) == 0).expand(3, -1, -1)
    assert out.shape == (3, *image.shape[1:]) and torch.equal(out[outside], image.expand(3, -1, -1, -1)[outside])
    assert torch.equal(out[:, 70, 120], generated[:, 70, 120])  # inside the mask: each variation its own
    expected = (
        "The generated images are a batch of 3 but the originals a batch of 2: composite each scene's results onto "
        "its own original."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        from dreammix_core.inpainting.pipeline import _composite

        _composite(image.expand(2, -1, -1, -1), generated, feather_mask(mask, 32))


def _constant_scene(height: int = 200, width: int = 320) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat grey-blue scene with random noise only under the mask (80x50 at rows 70–120, columns 120–200)."""
    image = torch.empty(1, height, width, 3)
    image[...] = torch.tensor([0.2, 0.4, 0.6])
    mask = torch.zeros(1, height, width)
    mask[:, 70:120, 120:200] = 1
    image[mask.bool()] = torch.rand(int(mask.sum()), 3, generator=torch.Generator().manual_seed(1))
    return image, mask


def test_local_stage_starts_from_the_surroundings_colour() -> None:
    """The crop's hole is pre-filled from its surroundings: on a flat scene the hole takes that colour.

    (Only the resize mixes a little of the noise into the hole's border; unfilled, the mean would be ~0.25.)"""
    backend = RecordingBackend()
    image, mask = _constant_scene()
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=6, seed=5, resolution=128, context_factor=0.0))
    local = backend.stages[0]
    deviation = (local.pixels - torch.tensor([0.2, 0.4, 0.6])).abs()[local.mask.bool()]
    assert local.mask.mean() > 0.1 and deviation.mean() < 0.02 and deviation.median() < 0.01


def _feathered(value: float, original: float, distance: int, feather: int = 32) -> float:
    """The paste's value at chessboard `distance` outside the mask: a linear ramp 1 − d/feather."""
    alpha = max(0.0, 1 - distance / feather)
    return alpha * value + (1 - alpha) * original


def test_global_stage_sees_the_local_result_pasted_through_the_whole_feather() -> None:
    """The recording backend denoises to seed/100: GCH's image is that inside, the ramp outside, the scene beyond.

    The crop is as tight as allowed (context factor 0), so the ramp's far end (31 pixels out) is only inside
    the pasted box because the box is widened for the feather.
    """
    backend = RecordingBackend()
    image, mask = _constant_scene()
    out = dreammix_inpaint(backend, image, mask, InpaintSettings(steps=6, seed=5, resolution=128, context_factor=0.0))
    local, harmonise = backend.stages
    assert harmonise.seed != local.seed
    pixels = harmonise.pixels[0, :, :, 0]
    lcg, gch, scene_red = 0.05, fresh_seed(5) % 100 / 100, 0.2
    assert torch.allclose(pixels[70:120, 120:200], torch.full((50, 80), lcg), atol=1e-4)
    for distance in (1, 8, 16, 31, 32, 40):
        assert pixels[95, 200 + distance - 1].item() == pytest.approx(_feathered(lcg, scene_red, distance), abs=1e-4)
        assert pixels[70 - distance, 160].item() == pytest.approx(_feathered(lcg, scene_red, distance), abs=1e-4)
        assert out[0, 95, 120 - distance, 0].item() == pytest.approx(_feathered(gch, scene_red, distance), abs=1e-4)
    assert torch.allclose(out[0, 70:120, 120:200, 0], torch.full((50, 80), gch), atol=1e-4)


def test_global_stage_pads_by_replicating_the_edges_and_leaves_the_padding_unmasked() -> None:
    """178x262 pads to 184x264: 6 rows and 2 columns (sizes where −n mod 8 and n mod 8 differ)."""
    backend = RecordingBackend()
    image, mask = scene(178, 262)
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=6, seed=5, resolution=128))
    harmonise = backend.stages[1]
    pixels, padded = harmonise.pixels, harmonise.mask
    assert pixels.shape[1:3] == (184, 264) and padded.shape[1:] == (184, 264)
    assert torch.equal(pixels[:, 178:], pixels[:, 177:178].expand(-1, 6, -1, -1))
    assert torch.equal(pixels[:, :, 262:], pixels[:, :, 261:262].expand(-1, -1, 2, -1))
    assert torch.equal(padded[:, :178, :262], mask) and not padded[:, 178:].any() and not padded[:, :, 262:].any()


@pytest.mark.parametrize(
    ("extra_height", "extra_width", "generated"),
    [(64, 0, "128x192"), (0, 64, "192x128"), (-1, 0, "128x127"), (0, -1, "127x128")],
)
def test_composite_refuses_a_result_of_another_size(extra_height: int, extra_width: int, generated: str) -> None:
    from dreammix_core.inpainting.pipeline import final_composite

    image, mask = scene(128, 128)
    result = torch.rand(1, 128 + extra_height, 128 + extra_width, 3)
    expected = (
        f"The generated image is {generated} but the original is 128x128: composite the image generated from this "
        "original."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        final_composite(image, result, mask)


def test_composite_accepts_the_latent_padding_and_crops_it() -> None:
    from dreammix_core.inpainting.pipeline import final_composite

    image, mask = scene(128, 128)
    result = torch.rand(1, 128 + 63, 128 + 63, 3)
    out = final_composite(image, result, mask)
    inside = mask[0].bool()
    assert out.shape == image.shape and torch.equal(out[0][inside], result[0, :128, :128][inside])


def test_replace_local_pastes_the_resized_local_result_with_the_feather() -> None:
    from dreammix_core.inpainting.pipeline import prepare_local, replace_local

    image, mask = _constant_scene()
    scene, _, _ = prepare_local(image, mask, context_factor=0.0, resolution=128)
    local = torch.full((1, scene.region.height, scene.region.width, 3), 0.9)
    out = replace_local(scene, local)
    assert out.shape == image.shape
    assert torch.allclose(out[0, 70:120, 120:200], torch.full((50, 80, 3), 0.9), atol=1e-4)
    assert out[0, 95, 200 + 9, 0].item() == pytest.approx(_feathered(0.9, 0.2, 10), abs=1e-4)
    assert torch.equal(out[0, :, :80], image[0, :, :80])


def test_a_single_local_step_still_runs_the_local_stage() -> None:
    backend = RecordingBackend()
    image, mask = scene()
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=3, lam=2 / 3, resolution=128))
    assert [(s.name, s.start, s.end) for s in backend.stages] == [("local", 0, 1), ("global", 1, 3)]


def test_from_pipeline_encodes_the_prompts_with_the_pipeline_own_text_encoder() -> None:
    """README's "Python without ComfyUI": a diffusers SD pipeline → backend → DreamMix, prompts encoded as SD does
    (padded to the encoder's length, last hidden state), recomputed here with the tokenizer and encoder alone."""
    from tiny_models import tiny_sd_pipeline

    from dreammix_core.inpainting.diffusers_backend import DiffusersBackend

    pipe = tiny_sd_pipeline()
    backend = DiffusersBackend.from_pipeline(pipe, "a dog", "grass", guidance_scale=2.5, local_prompt="a sks dog")

    def hidden(text: str) -> torch.Tensor:
        ids = pipe.tokenizer(text, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        with torch.no_grad():
            return pipe.text_encoder(ids.input_ids)[0]

    for embedded, text in (
        (backend.positive, "a dog"),
        (backend.negative, "grass"),
        (backend.local_positive, "a sks dog"),
    ):
        assert embedded.pooled is None and torch.allclose(embedded.tokens, hidden(text), atol=1e-6), text
    assert (backend.unet, backend.vae, backend.guidance_scale) == (pipe.unet, pipe.vae, 2.5)
    assert DiffusersBackend.from_pipeline(pipe, "a dog").local_positive is None
    image, mask = scene(128, 128)
    out = dreammix_inpaint(backend, image, mask, InpaintSettings(steps=3, resolution=128, seed=1))
    outside = feather_mask(mask, 32) == 0
    assert out.shape == image.shape and torch.equal(out[outside], image[outside])
    assert not torch.allclose(out[mask.bool()], image[mask.bool()], atol=1e-2)


def test_variations_are_one_batched_call_per_stage_with_the_batch_noise() -> None:
    """Three variations: LCG encodes the crop once and denoises three copies in one call, GCH three composites in
    one call; with a real model the first variation is the single run (the batch's first noise is the single
    run's), the others differ, and every one keeps the background exact."""
    backend = RecordingBackend()
    image, mask = scene()
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=6, resolution=128, variations=3))
    local, harmonise = backend.stages
    assert local.latent.shape[0] == 3 and torch.equal(local.latent[0], local.latent[2])
    assert harmonise.pixels.shape[0] == 3 and harmonise.latent.shape[0] == 3

    image, mask = scene(128, 128)
    settings = InpaintSettings(steps=4, resolution=64, seed=2)
    single = dreammix_inpaint(tiny_backend(), image, mask, settings)
    batch = dreammix_inpaint(tiny_backend(), image, mask, replace(settings, variations=3))
    assert batch.shape == (3, 128, 128, 3)
    torch.testing.assert_close(batch[:1], single, atol=1e-4, rtol=0)  # batched convolutions round differently
    inside = mask[0].bool()
    assert (batch[1][inside] - batch[0][inside]).abs().mean() > 0.01
    assert (batch[2][inside] - batch[1][inside]).abs().mean() > 0.01
    outside = feather_mask(mask, 32)[0] == 0
    for result in batch:
        assert torch.equal(result[outside], image[0][outside])


def test_variations_below_one_are_refused() -> None:
    with pytest.raises(DreamMixInputError, match=r"^variations must be at least 1, got 0\.$"):
        dreammix_inpaint(RecordingBackend(), *scene(), InpaintSettings(variations=0))


def test_scenes_whose_crops_share_a_size_run_in_one_call_per_stage_each_with_its_own_crop() -> None:
    """Two scenes with a mask each (the second mirrored: another place, the same crop size), 2 variations: one
    LCG call on both crops (4 items), one GCH call on both scenes' composites; 4 results, scene by scene, each
    exact outside its own mask + feather."""
    image, mask = scene()
    images = torch.cat([image, image.flip(2)])
    masks = torch.cat([mask, mask.flip(2)])
    backend = RecordingBackend()
    out = dreammix_inpaint(backend, images, masks, InpaintSettings(steps=6, resolution=128, variations=2))
    assert out.shape == (4, *image.shape[1:])
    local, harmonise = backend.stages
    assert (local.name, local.scenes, local.latent.shape[0], local.pixels.shape[0]) == ("local", 2, 4, 2)
    assert (harmonise.name, harmonise.scenes, harmonise.latent.shape[0], harmonise.mask.shape[0]) == ("global", 2, 4, 2)
    assert not torch.equal(local.pixels[0], local.pixels[1])  # each scene its own crop
    assert torch.equal(local.latent[0], local.latent[1]) and not torch.equal(local.latent[1], local.latent[2])
    assert torch.equal(harmonise.mask[1, :180, :260], masks[1])
    for index in range(4):
        outside = feather_mask(masks[index // 2 : index // 2 + 1], 32)[0] == 0
        assert torch.equal(out[index][outside], images[index // 2][outside])
    one_mask = dreammix_inpaint(RecordingBackend(), images, mask, InpaintSettings(steps=6, resolution=128))
    assert one_mask.shape[0] == 2
    with pytest.raises(DreamMixInputError, match=r"^2 scenes but 3 masks: give one mask for all, or one per scene\.$"):
        dreammix_inpaint(RecordingBackend(), images, torch.cat([mask] * 3), InpaintSettings())


def test_scenes_of_other_crop_sizes_run_apart_and_come_back_in_order() -> None:
    """Scenes 0 and 2 share a crop size (192x128), scene 1 (a wide mask: a wide crop, 192x64) has its own: the first
    group's calls, then the second's; each result is its own scene's, exact outside its own mask."""
    image, mask = scene(256, 512)
    images = torch.cat([image, image.flip(1), image.flip(2)])
    wide = torch.zeros_like(mask)
    wide[:, 60:110, 10:500] = 1
    masks = torch.cat([mask, wide, mask.flip(2)])
    backend = RecordingBackend()
    out = dreammix_inpaint(backend, images, masks, InpaintSettings(steps=6, resolution=128))
    assert [(stage.name, stage.scenes) for stage in backend.stages] == [
        ("local", 2), ("global", 2), ("local", 1), ("global", 1)
    ]  # fmt: skip
    assert backend.stages[0].pixels.shape[1:3] == (128, 192) and backend.stages[2].pixels.shape[1:3] == (64, 192)
    assert torch.equal(backend.stages[3].mask[0], wide[0])  # the lone group is scene 1
    for index in range(3):
        outside = feather_mask(masks[index : index + 1], 32)[0] == 0
        assert torch.equal(out[index][outside], images[index][outside])
        assert not torch.equal(out[index][~outside], images[index][~outside])


@pytest.mark.parametrize("inpainting", [False, True])
def test_a_scene_grouped_with_another_gives_what_it_gives_alone(inpainting: bool) -> None:
    """Each scene of a group is noised as if it ran alone, so its variations equal the lone run's (up to batched
    rounding), and they still differ from each other."""
    image, mask = scene(128, 128)
    images = torch.cat([image, image.flip(2)])
    masks = torch.cat([mask, mask.flip(2)])
    settings = InpaintSettings(steps=4, resolution=64, seed=3, variations=2)
    grouped = dreammix_inpaint(tiny_backend(inpainting), images, masks, settings)
    for index in range(2):
        alone = dreammix_inpaint(
            tiny_backend(inpainting), images[index : index + 1], masks[index : index + 1], settings
        )
        torch.testing.assert_close(grouped[2 * index : 2 * index + 2], alone, atol=1e-4, rtol=0)
    inside = masks[1].bool()
    assert (grouped[3][inside] - grouped[2][inside]).abs().mean() > 0.01


@dataclass
class NoisyStateBackend(RecordingBackend):
    """A sampler whose state differs from its estimate: the state is the estimate plus 0.5, as a state above sigma 0
    is the estimate plus noise."""

    def denoise(self, stage: Stage) -> StageResult:
        estimate = super().denoise(stage).denoised
        return StageResult(latent=estimate + 0.5, denoised=estimate)


def test_gch_receives_lcg_denoised_estimate_not_its_noisy_state() -> None:
    """method.md's switch: the x0 estimate at the switch step is decoded and pasted. LCG (seed 5) estimates 0.05 and
    is in state 0.55; inside the mask GCH must see 0.05."""
    backend = NoisyStateBackend()
    image, mask = _constant_scene()
    dreammix_inpaint(backend, image, mask, InpaintSettings(steps=6, seed=5, resolution=128, context_factor=0.0))
    local, harmonise = backend.stages
    assert (local.name, harmonise.name) == ("local", "global")
    inside = harmonise.pixels[0, 70:120, 120:200]
    torch.testing.assert_close(inside, torch.full_like(inside, 0.05), atol=1e-4, rtol=0)


@dataclass
class EchoBackend(RecordingBackend):
    """'Denoises' each item to half its own latent plus the seed's constant, so every result depends on its own
    scene's crop and window (a scene given another's content, or another's result, shows)."""

    def denoise(self, stage: Stage) -> StageResult:
        self.stages.append(stage)
        value = 0.5 * stage.latent + (stage.seed % 100) / 100
        return StageResult(latent=value, denoised=value)


def _windowed_scenes() -> tuple[torch.Tensor, torch.Tensor]:
    """Three 500x400 scenes at resolution 64 with a GCH budget of 8 × 64² = 32768 px. Every crop works at 64x64.
    Masks 0 and 2 (40x30, needing 104x94 with the feather) get the budget's window: width floor64(√32768 = 181)
    = 128, height floor64(32768 / 128) = 256. Mask 1 (200x160, needing 264x224) is over the budget and gets its
    need rounded up: 320x256."""
    images = torch.rand(3, 400, 500, 3, generator=torch.Generator().manual_seed(6))
    masks = torch.zeros(3, 400, 500)
    masks[0, 120:150, 300:340] = 1
    masks[1, 100:260, 160:360] = 1
    masks[2, 120:150, 160:200] = 1
    return images, masks


def test_scenes_of_one_crop_size_but_other_windows_run_apart_each_as_it_runs_alone() -> None:
    """Grouping is by (LCG working size, GCH window size): scenes 0 and 2 share both, scene 1 only the crop size, so
    two groups, one sampler call per stage each; every scene's result is exactly its lone run's."""
    images, masks = _windowed_scenes()
    settings = InpaintSettings(steps=6, resolution=64, seed=4, global_max_area=8.0)
    backend = EchoBackend()
    out = dreammix_inpaint(backend, images, masks, settings)
    assert [(stage.name, stage.scenes, tuple(stage.pixels.shape[:3])) for stage in backend.stages] == [
        ("local", 2, (2, 64, 64)), ("global", 2, (2, 256, 128)), ("local", 1, (1, 64, 64)), ("global", 1, (1, 256, 320))
    ]  # fmt: skip
    for index in range(3):
        alone = dreammix_inpaint(EchoBackend(), images[index : index + 1], masks[index : index + 1], settings)
        assert torch.equal(out[index : index + 1], alone), index
        assert not torch.equal(alone, images[index : index + 1])


def test_tiny_sdxl_scenes_of_one_crop_size_but_other_windows_give_their_lone_runs() -> None:
    """The same three scenes on a real model: each result is its lone run's (up to batched rounding)."""
    images, masks = _windowed_scenes()
    settings = InpaintSettings(steps=3, resolution=64, seed=4, global_max_area=8.0)
    grouped = dreammix_inpaint(tiny_backend(), images, masks, settings)
    for index in range(3):
        alone = dreammix_inpaint(tiny_backend(), images[index : index + 1], masks[index : index + 1], settings)
        torch.testing.assert_close(grouped[index : index + 1], alone, atol=1e-4, rtol=0)
