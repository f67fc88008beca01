"""Local Content Generation then Global Context Harmonization, over any denoising backend.

The orchestration only needs to encode, decode and denoise a step range of one schedule; the
`DenoiseBackend` protocol is that contract. `nodes/` implements it on ComfyUI's samplers and
`diffusers_backend` on a diffusers pipeline's components, so both run this same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

from ..errors import DreamMixInputError
from ..masks import check_mask_count
from .blend import FEATHER, blend, feather_mask, paste_local
from .fill import smooth_fill
from .region import (
    RELEASED_CONTEXT_FACTOR,
    SIZE_MULTIPLE,
    CropRegion,
    Upscaler,
    as_float32,
    check_generated_size,
    compute_region,
    crop,
    validate_image_and_mask,
)
from .schedule import RELEASED_CODE_LAMBDA, StageSplit
from .window import check_batches, cut, gch_window, put


@dataclass(frozen=True)
class Stage:
    """One call to the sampler: steps [start, end) of a `steps`-step schedule."""

    name: Literal["local", "global"]
    latent: torch.Tensor
    """(B, ...) encoded `pixels`: noised at the first sigma, and the known content blended back each step. B is
    `scenes` runs of equal length, one scene's items (its variations) each."""
    pixels: torch.Tensor
    """(B, H, W, C), (scenes, ...) or (1, ...) image in [0, 1]; inpainting models take it, masked, as conditioning."""
    mask: torch.Tensor
    """(B, H, W), (scenes, ...) or (1, ...) binary mask at pixel resolution: 1 is regenerated."""
    start: int
    end: int
    steps: int
    seed: int
    scenes: int = 1
    """Scenes grouped into this call: each one's items get the noise they would get if it ran alone."""

    def per_item(self, tensor: torch.Tensor) -> torch.Tensor:
        """`pixels`, `mask` or anything batched like them, as one entry per latent item."""
        return _batched(tensor, self.latent.shape[0])

    def masked_pixels(self) -> torch.Tensor:
        """`pixels` with the masked pixels grey, batched like `pixels`: what inpainting models take (written as
        ComfyUI's InpaintModelConditioning writes it, so the two agree bit for bit)."""
        keep = 1.0 - _batched(self.mask, self.pixels.shape[0]).unsqueeze(-1)
        return (self.pixels[..., :3] - 0.5) * keep + 0.5

    def noise(self, draw: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The initial noise: `draw` (the backend's seeded draw for a latent batch) for one scene's items, the same
        for every scene, so grouping scenes into one call changes none of their results."""
        one_scene = draw(self.latent[: self.latent.shape[0] // self.scenes])
        return one_scene.repeat(self.scenes, *([1] * (one_scene.ndim - 1)))


def seeded_noise(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise shaped like the latent batch `items`, drawn item by item from `generator`, so the first item's
    noise is the single run's whatever the batch size (one draw of the whole batch differs in its first item's last
    values where an item's size is not a multiple of 16: torch's vectorised normal fill)."""
    return torch.stack([torch.randn(items.shape[1:], generator=generator) for _ in range(items.shape[0])])


def _batched(tensor: torch.Tensor, items: int) -> torch.Tensor:
    """A (1, ...), (scenes, ...) or (items, ...) batch as (items, ...), each scene's entry repeated for its items."""
    if tensor.shape[0] == items:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(items, *tensor.shape[1:])
    return tensor.repeat_interleave(items // tensor.shape[0], dim=0)


@dataclass(frozen=True)
class StageResult:
    latent: torch.Tensor
    """The sampler's state after the last step (clean when `end == steps`)."""
    denoised: torch.Tensor
    """The model's denoised (x0) estimate at the last step, in the latent space of `encode`."""


class DenoiseBackend(Protocol):
    spatial_factor: int
    """Pixels per latent cell along each side (8 for SD1.5 and SDXL)."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...

    def denoise(self, stage: Stage) -> StageResult:
        """Noises `stage.latent` to sigma[start] with noise from `stage.seed`, then samples to sigma[end]."""
        ...


@dataclass(frozen=True)
class InpaintSettings:
    steps: int = 30
    lam: float = RELEASED_CODE_LAMBDA
    seed: int = 0
    context_factor: float = RELEASED_CONTEXT_FACTOR
    resolution: int = 1024
    feather: int = FEATHER
    global_max_area: float = 0.0
    """GCH's pixel budget as a multiple of the LCG working area (`window`); 0: the whole image (the paper)."""
    variations: int = 1
    """Results per scene, from one batched sampler call per stage: the host's batch noise from `seed` (the
    first is the single run's noise)."""


def check_variations(variations: int) -> None:
    if variations < 1:
        raise DreamMixInputError(f"variations must be at least 1, got {variations}.")


def repeat(image: torch.Tensor, count: int) -> torch.Tensor:
    """One image (1, ...) as a batch of `count` copies."""
    return image.expand(count, *image.shape[1:])


def fresh_seed(seed: int) -> int:
    """GCH restarts with noise independent of LCG's, still fixed by the user's seed."""
    return (seed + 1) % (1 << 64)


def check_alignment(spatial_factor: int, multiple: int = SIZE_MULTIPLE) -> None:
    if spatial_factor <= 0 or multiple % spatial_factor:
        raise DreamMixInputError(
            f"This model's latent has {spatial_factor} pixels per cell, which does not divide the "
            f"crop size multiple {multiple}: DreamMix supports models with 1, 2, 4, 8, 16, 32 or 64."
        )


def local_region(mask: torch.Tensor, context_factor: float, resolution: int, feather: int) -> CropRegion:
    """LCG's crop box and working size for a binary mask (1, H, W)."""
    return compute_region(mask, context_factor, resolution, SIZE_MULTIPLE, min_margin=feather)


def prepare_local(
    image: torch.Tensor,
    mask: torch.Tensor,
    context_factor: float = RELEASED_CONTEXT_FACTOR,
    resolution: int = 1024,
    feather: int = FEATHER,
    upscaler: Upscaler | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> tuple[CropRegion, torch.Tensor, torch.Tensor]:
    """The local crop, its masked pixels pre-filled, and its binary mask; `check_interrupt` may stop the fill."""
    mask = validate_image_and_mask(image, mask)
    region = local_region(mask, context_factor, resolution, feather)
    return region, *filled_crop(image, mask, region, upscaler, check_interrupt)


def filled_crop(
    image: torch.Tensor,
    mask: torch.Tensor,
    region: CropRegion,
    upscaler: Upscaler | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The region of an image and its binary mask at the working size, the masked pixels pre-filled."""
    local_image, local_mask = crop(as_float32(image[..., :3]), mask, region, upscaler)
    return smooth_fill(local_image, local_mask, check_interrupt), local_mask


def local_generation(
    backend: DenoiseBackend,
    local_image: torch.Tensor,
    local_mask: torch.Tensor,
    steps: int,
    switch_at: int,
    seed: int,
    variations: int = 1,
) -> torch.Tensor:
    """LCG: steps [0, switch_at) on the crops of one or more scenes (S, H, W, C) of one size, `variations` each, in
    one call; returns the denoised latent estimates at the switch, scene by scene (each crop is encoded once and
    its variations differ only in their noise)."""
    check_variations(variations)
    latent = backend.encode(local_image).repeat_interleave(variations, dim=0)
    stage = Stage("local", latent, local_image, local_mask, 0, switch_at, steps, seed, scenes=local_image.shape[0])
    return backend.denoise(stage).denoised


def replace_local(
    image: torch.Tensor, mask: torch.Tensor, region: CropRegion, local_result: torch.Tensor, feather: int = FEATHER
) -> torch.Tensor:
    """Pastes the decoded LCG result (a batch of variations) into copies of the full image with the feathered mask."""
    mask = validate_image_and_mask(image, mask)
    scene = repeat(as_float32(image[..., :3]), local_result.shape[0])
    return paste_local(scene, local_result, region, feather_mask(mask, feather))


def _pad(tensor: torch.Tensor, multiple: int, mode: str) -> torch.Tensor:
    """Pads the last two dims of (B, C, H, W) on the bottom and right up to a multiple."""
    height, width = tensor.shape[-2:]
    pad = (0, -width % multiple, 0, -height % multiple)
    return F.pad(tensor, pad, mode=mode) if any(pad) else tensor


def pad_for_latent(image: torch.Tensor, mask: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads image (edge replication) and mask (unmasked) so the sides are multiples of the latent cell.

    `final_composite` crops the padding off again, so any input size comes out unchanged.
    """
    pixels = _pad(as_float32(image[..., :3]).movedim(-1, 1), multiple, "replicate").movedim(1, -1)
    return pixels, _pad(as_float32(mask).unsqueeze(1), multiple, "constant").squeeze(1)


def global_harmonization(
    backend: DenoiseBackend,
    pixels: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    switch_at: int,
    seed: int,
    latent: torch.Tensor | None = None,
    scenes: int = 1,
) -> torch.Tensor:
    """GCH: restarts at the switch step with fresh noise on the full image (or the images of `scenes` scenes of one
    size, their variations in a row); returns the clean latent."""
    if latent is None:
        latent = backend.encode(pixels)
    stage = Stage("global", latent, pixels, mask, switch_at, steps, steps, seed, scenes=scenes)
    return backend.denoise(stage).latent


def final_composite(
    image: torch.Tensor, result: torch.Tensor, mask: torch.Tensor, feather: int = FEATHER
) -> torch.Tensor:
    """The result inside mask and feather; the original pixels, exactly, everywhere else."""
    mask = validate_image_and_mask(image, mask)
    return _composite(as_float32(image), as_float32(result), feather_mask(mask, feather))


def _composite(image: torch.Tensor, result: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Blends `result`, its latent padding cropped off, onto `image` with the feathered mask `alpha` (one original
    takes a batch of variations)."""
    height, width = image.shape[1:3]
    check_batches(result, image)
    check_generated_size(result, width, height, "the original", "composite the image generated from this original.")
    result = result[:, :height, :width]
    image = repeat(image, result.shape[0]) if image.shape[0] == 1 else image
    out = image.clone()
    out[..., :3] = blend(image[..., :3], result[..., :3], alpha)
    return out


@dataclass(frozen=True)
class _Scene:
    """One scene of a batch and what the method derives from its mask before any sampling."""

    image: torch.Tensor
    binary: torch.Tensor
    alpha: torch.Tensor
    """The feathered mask: the paste at the switch and the final composite."""
    region: CropRegion
    window: CropRegion | None
    """GCH's part of the scene (None: the whole scene)."""

    def group(self) -> tuple[int, ...]:
        """Scenes of one group share a sampler call per stage: equal LCG working size and GCH window size."""
        return (self.region.width, self.region.height, *cut(self.binary, self.window).shape[1:])


def dreammix_inpaint(
    backend: DenoiseBackend,
    images: torch.Tensor,
    masks: torch.Tensor,
    settings: InpaintSettings = InpaintSettings(),
    upscaler: Upscaler | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> torch.Tensor:
    """The whole method on each scene of a batch (S, H, W, C), with one mask (H, W) for all or one per scene
    (S, H, W); returns the scenes' results in order, `settings.variations` each. Every scene gets its own crop and
    window; scenes whose crops and windows share a size run together, one sampler call per stage, each with the
    noise it gets alone.

    `check_interrupt` is called between the pre-fill's passes and may raise to stop the run (the samplers check
    for themselves through the backend).
    """
    check_alignment(backend.spatial_factor)
    check_variations(settings.variations)
    masks = masks.unsqueeze(0) if masks.ndim == 2 else masks
    if masks.ndim == 3:
        check_mask_count(masks.shape[0], images.shape[0], "scene")
    scenes = [
        _prepare(images[index : index + 1], masks[index : index + 1] if masks.shape[0] > 1 else masks, settings)
        for index in range(images.shape[0])
    ]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, scene in enumerate(scenes):
        groups.setdefault(scene.group(), []).append(index)
    results: dict[int, torch.Tensor] = {}
    for indices in groups.values():
        group = [scenes[index] for index in indices]
        results.update(zip(indices, _inpaint_group(backend, group, settings, upscaler, check_interrupt)))
    return torch.cat([results[index] for index in range(len(scenes))])


def _prepare(image: torch.Tensor, mask: torch.Tensor, settings: InpaintSettings) -> _Scene:
    binary = validate_image_and_mask(image, mask)
    region = local_region(binary, settings.context_factor, settings.resolution, settings.feather)
    window = gch_window(binary, region.width * region.height, settings.global_max_area, settings.feather)
    return _Scene(as_float32(image), binary, feather_mask(binary, settings.feather), region, window)


def _inpaint_group(
    backend: DenoiseBackend,
    group: list[_Scene],
    settings: InpaintSettings,
    upscaler: Upscaler | None,
    check_interrupt: Callable[[], None] | None,
) -> list[torch.Tensor]:
    """LCG → GCH for scenes of one group (`_Scene.group`); returns each scene's `settings.variations` results."""
    split = StageSplit.of(settings.steps, settings.lam)
    count = settings.variations
    composites = [repeat(scene.image[..., :3], count) for scene in group]
    if split.runs_local:
        crops = [filled_crop(scene.image, scene.binary, scene.region, upscaler, check_interrupt) for scene in group]
        local_images, local_masks = _stacked(crops)
        denoised = local_generation(
            backend, local_images, local_masks, settings.steps, split.switch_at, settings.seed, count
        )
        decoded = backend.decode(denoised).split(count)
        composites = [
            paste_local(composite, local, scene.region, scene.alpha)
            for composite, local, scene in zip(composites, decoded, group)
        ]
    if split.runs_global:
        padded = [
            pad_for_latent(cut(composite, scene.window), cut(scene.binary, scene.window), backend.spatial_factor)
            for composite, scene in zip(composites, group)
        ]
        pixels, masks = _stacked(padded)
        seed = fresh_seed(settings.seed)
        latent = global_harmonization(backend, pixels, masks, settings.steps, split.switch_at, seed, scenes=len(group))
        decoded = as_float32(backend.decode(latent)).split(count)
        composites = [
            put(composite, harmonised, scene.window) for composite, harmonised, scene in zip(composites, decoded, group)
        ]
    return [_composite(scene.image, composite, scene.alpha) for composite, scene in zip(composites, group)]


def _stacked(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, mask) per scene as one batch of images and one of masks. A lone scene's tensors pass as they are:
    a copy would change their memory layout, and with it the VAE's convolution kernels and the last bits of the
    result, so the one-shot node would no longer equal the granular chain bit for bit."""
    if len(pairs) == 1:
        return pairs[0]
    images, masks = zip(*pairs)
    return torch.cat(images), torch.cat(masks)
