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
from ..masks import check_mask_count, masked_image
from .blend import FEATHER, blend, feather_mask, paste_local
from .fill import smooth_fill
from .region import (
    RELEASED_CONTEXT_FACTOR,
    SIZE_MULTIPLE,
    Upscaler,
    as_float32,
    check_generated_size,
    crop,
    validate_image_and_mask,
)
from .scene import Scene, prepare_scene
from .schedule import RELEASED_CODE_LAMBDA, StageSplit
from .window import check_batches, cut, put


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
        """`pixels` with the masked pixels grey, batched like `pixels`: what inpainting models take."""
        return masked_image(self.pixels[..., :3], _batched(self.mask, self.pixels.shape[0]).unsqueeze(-1))

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


def prepare_local(
    image: torch.Tensor,
    mask: torch.Tensor,
    context_factor: float = RELEASED_CONTEXT_FACTOR,
    resolution: int = 1024,
    feather: int = FEATHER,
    upscaler: Upscaler | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> tuple[Scene, torch.Tensor, torch.Tensor]:
    """The scene, its local crop with the masked pixels pre-filled, and the crop's binary mask; `check_interrupt`
    may stop the fill."""
    scene = prepare_scene(image, mask, context_factor, resolution, feather)
    return scene, *filled_crop(scene, upscaler, check_interrupt)


def filled_crop(
    scene: Scene, upscaler: Upscaler | None = None, check_interrupt: Callable[[], None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scene's region and its binary mask at the working size, the masked pixels pre-filled."""
    local_image, local_mask = crop(scene.image[..., :3], scene.binary, scene.region, upscaler)
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
    check_alignment(backend.spatial_factor)
    check_variations(variations)
    latent = backend.encode(local_image).repeat_interleave(variations, dim=0)
    stage = Stage("local", latent, local_image, local_mask, 0, switch_at, steps, seed, scenes=local_image.shape[0])
    return backend.denoise(stage).denoised


def replace_local(scene: Scene, local_result: torch.Tensor) -> torch.Tensor:
    """Pastes the decoded LCG results (a batch of variations) into copies of the scene with the feathered mask."""
    copies = repeat(scene.image[..., :3], local_result.shape[0])
    return paste_local(copies, local_result, scene.region, scene.alpha)


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


def prepare_global(scene: Scene, composite: torch.Tensor, spatial_factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GCH's input: the window (or the whole) of the composite and of the mask, padded to whole latent cells."""
    return pad_for_latent(cut(composite, scene.window), cut(scene.binary, scene.window), spatial_factor)


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


def stitch(scene: Scene, generated: torch.Tensor) -> torch.Tensor:
    """The generated images (of the window, or of the whole scene without one) put back into the scene, then
    blended onto the original with the feathered mask: the original, exactly, outside mask and feather."""
    return _composite(scene.image, put(scene.image, as_float32(generated), scene.window), scene.alpha)


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


def _prepare(image: torch.Tensor, mask: torch.Tensor, settings: InpaintSettings) -> Scene:
    scene = prepare_scene(image, mask, settings.context_factor, settings.resolution, settings.feather)
    return scene.windowed(settings.global_max_area)


def _inpaint_group(
    backend: DenoiseBackend,
    group: list[Scene],
    settings: InpaintSettings,
    upscaler: Upscaler | None,
    check_interrupt: Callable[[], None] | None,
) -> list[torch.Tensor]:
    """LCG → GCH for scenes of one group (`Scene.group`); returns each scene's `settings.variations` results."""
    split = StageSplit.of(settings.steps, settings.lam)
    count = settings.variations
    composites = [repeat(scene.image[..., :3], count) for scene in group]
    if split.runs_local:
        local_images, local_masks = _stacked([filled_crop(scene, upscaler, check_interrupt) for scene in group])
        denoised = local_generation(
            backend, local_images, local_masks, settings.steps, split.switch_at, settings.seed, count
        )
        decoded = backend.decode(denoised).split(count)
        composites = [replace_local(scene, local) for local, scene in zip(decoded, group)]
    if not split.runs_global:
        return [_composite(scene.image, composite, scene.alpha) for composite, scene in zip(composites, group)]
    pixels, masks = _stacked(
        [prepare_global(scene, composite, backend.spatial_factor) for composite, scene in zip(composites, group)]
    )
    seed = fresh_seed(settings.seed)
    latent = global_harmonization(backend, pixels, masks, settings.steps, split.switch_at, seed, scenes=len(group))
    return [stitch(scene, harmonised) for harmonised, scene in zip(backend.decode(latent).split(count), group)]


def _stacked(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, mask) per scene as one batch of images and one of masks. A lone scene's tensors pass as they are:
    a copy would change their memory layout, and with it the VAE's convolution kernels and the last bits of the
    result, so the one-shot node would no longer equal the granular chain bit for bit."""
    if len(pairs) == 1:
        return pairs[0]
    images, masks = zip(*pairs)
    return torch.cat(images), torch.cat(masks)
