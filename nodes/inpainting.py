"""DreamMix inference nodes: LCG → GCH, granular and one-shot. Thin adapters to `dreammix_core`."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io

from ..dreammix_core.errors import DreamMixInputError
from ..dreammix_core.inpainting.pipeline import (
    InpaintSettings,
    check_alignment,
    dreammix_inpaint,
    final_composite,
    fresh_seed,
    global_harmonization,
    local_generation,
    pad_for_latent,
    prepare_local,
    repeat,
    replace_local,
)
from ..dreammix_core.inpainting.region import CropRegion, validate_image_and_mask
from ..dreammix_core.inpainting.schedule import StageSplit
from ..dreammix_core.inpainting.window import DEFAULT_MAX_AREA, cut, gch_window, put, whole_image
from ..dreammix_core.masks import binarize
from . import inputs
from .comfy_backend import ComfyBackend, native_resolution, spatial_factor
from .convert import to_host_dtype
from .upscale import upscaler_from

CATEGORY = "DreamMix/inpaint"
Region = io.Custom("DREAMMIX_REGION")

CHECK_INTERRUPT = comfy.model_management.throw_exception_if_processing_interrupted
"""Raises when the user pressed Cancel; the core calls it between the steps it runs itself."""
LCG_RAN_KEY = "dreammix_lcg_ran"
"""Set on the LCG output LATENT so the replacement node knows when LCG did not run (λ = 1)."""


def _check_cut_from(image: torch.Tensor, box: CropRegion, what: str) -> None:
    """Refuses a region or window that another node cut from an image of another size than `image`."""
    if (box.image_width, box.image_height) != (image.shape[2], image.shape[1]):
        raise DreamMixInputError(f"{what} from an image of another size: connect the same image.")


def _backend(model, vae, positive, negative, cfg, sampler_name, scheduler, local_positive=None) -> ComfyBackend:
    backend = ComfyBackend(model, vae, positive, negative, cfg, sampler_name, scheduler, local_positive)
    check_alignment(backend.spatial_factor)
    return backend


class DreamMixLocalCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixLocalCrop",
            display_name="DreamMix Local Crop",
            category=CATEGORY,
            description="Cuts the context box around the mask, resized to the model's working size, with the "
            "masked pixels pre-filled from their surroundings (the input of LCG).",
            inputs=[
                inputs.image(),
                inputs.mask(),
                inputs.resolution(
                    "Working resolution: the crop's area is about its square, sides multiples of 64. "
                    "0 = the connected model's native size (512 for SD1.5, 1024 for SDXL)."
                ),
                inputs.context(),
                inputs.feather(),
                io.UpscaleModel.Input(
                    "upscale_model",
                    optional=True,
                    tooltip="Optional super-resolution model for crops smaller than the working size.",
                ),
                io.Model.Input(
                    "model",
                    optional=True,
                    tooltip="The diffusion model LCG will use: with resolution 0 the crop gets its native size.",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "local_image",
                    display_name="local_image",
                    tooltip="The crop at working size, masked pixels pre-filled.",
                ),
                io.Mask.Output("local_mask", display_name="local_mask", tooltip="The mask of the crop, binary."),
                Region.Output(
                    "region",
                    display_name="region",
                    tooltip="Where the crop lies in the image, for DreamMix Local Replace.",
                ),
            ],
        )

    @classmethod
    def execute(cls, image, mask, resolution, context_factor, feather, upscale_model=None, model=None) -> io.NodeOutput:
        if not resolution:
            if model is None:
                raise DreamMixInputError(
                    "Resolution 0 means the model's native size: connect the model to DreamMix Local Crop's "
                    "'model' input, or set a resolution (512 for SD1.5, 1024 for SDXL)."
                )
            resolution = native_resolution(model)
        region, local_image, local_mask = prepare_local(
            image, mask, context_factor, resolution, feather, upscaler_from(upscale_model), CHECK_INTERRUPT
        )
        return io.NodeOutput(to_host_dtype(local_image), to_host_dtype(local_mask), region)


class DreamMixLocalSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixLocalSampler",
            display_name="DreamMix LCG Sampler",
            category=CATEGORY,
            description="Local Content Generation: denoises the crop from the first step to the switch step "
            "and returns the denoised estimate there.",
            inputs=[
                *inputs.model_and_prompts(),
                io.Image.Input("local_image", tooltip="From DreamMix Local Crop."),
                io.Mask.Input("local_mask", tooltip="From DreamMix Local Crop."),
                *inputs.sampling(),
                inputs.variations(),
            ],
            outputs=[
                io.Latent.Output(
                    "local_latent",
                    display_name="local_latent",
                    tooltip="Denoised (x0) estimate of the crop at the switch step.",
                )
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        vae,
        local_image,
        local_mask,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        switch,
        variations=1,
    ) -> io.NodeOutput:
        backend = _backend(model, vae, positive, negative, cfg, sampler_name, scheduler)
        local_mask = validate_image_and_mask(local_image, local_mask)
        split = StageSplit.of(steps, switch)
        if split.runs_local:
            latent = local_generation(backend, local_image, local_mask, steps, split.switch_at, seed, variations)
        else:  # no LCG step: the crop as it is, once per variation, for GCH to vary
            latent = repeat(backend.encode(local_image), variations)
        return io.NodeOutput({"samples": latent, LCG_RAN_KEY: split.runs_local})


class DreamMixLocalReplace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixLocalReplace",
            display_name="DreamMix Local Replace",
            category=CATEGORY,
            description="Pastes the LCG result into the full image with a feathered mask and encodes it, with "
            "the mask attached as noise mask, ready for GCH.",
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE of the model."),
                io.Latent.Input("local_latent", tooltip="From DreamMix LCG Sampler."),
                Region.Input("region", tooltip="From DreamMix Local Crop."),
                inputs.image("The original scene."),
                inputs.mask(),
                inputs.feather(),
                inputs.global_max_area(
                    0.0,
                    "GCH's pixel budget in units of the local crop's working area (resolution²). A larger scene is "
                    "harmonised on a window around the mask at its own pixel scale: connect 'window' to DreamMix "
                    "Composite. 0 = always the whole scene (the paper; DreamMix Inpaint's default is 4).",
                ),
            ],
            outputs=[
                io.Latent.Output(
                    "latent", display_name="latent", tooltip="The composite's latent with the mask as noise mask."
                ),
                io.Image.Output(
                    "composite",
                    display_name="composite",
                    tooltip="The scene with the LCG result pasted in (its GCH window over the budget).",
                ),
                Region.Output(
                    "window",
                    display_name="window",
                    tooltip="Where GCH runs in the scene, for DreamMix Composite (the whole scene within the budget).",
                ),
            ],
        )

    @classmethod
    def execute(cls, vae, local_latent, region: CropRegion, image, mask, feather, global_max_area=0.0) -> io.NodeOutput:
        binary = validate_image_and_mask(image, mask)
        _check_cut_from(image, region, "The region was cropped")
        composite = repeat(image[..., :3], local_latent["samples"].shape[0])  # one per variation
        if local_latent.get(LCG_RAN_KEY, True):
            local = vae.decode(local_latent["samples"])
            composite = replace_local(image, binary, region, local.reshape((-1,) + tuple(local.shape[-3:])), feather)
        factor = spatial_factor(vae)
        check_alignment(factor)
        window = gch_window(binary, region.width * region.height, global_max_area, feather)
        composite = cut(composite, window)
        pixels, padded_mask = pad_for_latent(composite, cut(binary, window), factor)
        latent = {"samples": vae.encode(pixels), "noise_mask": padded_mask.unsqueeze(1)}
        return io.NodeOutput(latent, to_host_dtype(composite), window or whole_image(image.shape[2], image.shape[1]))


class DreamMixGlobalSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixGlobalSampler",
            display_name="DreamMix GCH Sampler",
            category=CATEGORY,
            description="Global Context Harmonization: restarts at the switch step with fresh noise on the full "
            "image and denoises to the end.",
            inputs=[
                *inputs.model_and_prompts(),
                io.Latent.Input("latent", tooltip="From DreamMix Local Replace (carries the noise mask)."),
                io.Image.Input("composite", tooltip="From DreamMix Local Replace; inpainting models see it masked."),
                *inputs.sampling(),
            ],
            outputs=[
                io.Latent.Output(
                    "harmonized",
                    display_name="harmonized",
                    tooltip="The harmonised full-image latent; decode it with VAE Decode.",
                )
            ],
        )

    @classmethod
    def execute(
        cls, model, positive, negative, vae, latent, composite, seed, steps, cfg, sampler_name, scheduler, switch
    ) -> io.NodeOutput:
        backend = _backend(model, vae, positive, negative, cfg, sampler_name, scheduler)
        if "noise_mask" not in latent:
            raise DreamMixInputError("The latent has no noise mask: connect DreamMix Local Replace's latent.")
        mask = latent["noise_mask"].reshape((-1,) + tuple(latent["noise_mask"].shape[-2:]))
        pixels, mask = pad_for_latent(composite, binarize(mask), backend.spatial_factor)
        if tuple(pixels.shape[1:3]) != tuple(mask.shape[-2:]):
            raise DreamMixInputError(
                "The composite image and the latent's mask differ in size: connect both "
                "outputs of the same DreamMix Local Replace."
            )
        split = StageSplit.of(steps, switch)
        if not split.runs_global:
            return io.NodeOutput(latent)
        out = global_harmonization(
            backend, pixels, mask, steps, split.switch_at, fresh_seed(seed), latent=latent["samples"]
        )
        return io.NodeOutput({"samples": out})


class DreamMixComposite(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixComposite",
            display_name="DreamMix Composite",
            category=CATEGORY,
            description="Blends the generated image onto the original with the feathered mask: outside mask and "
            "feather the original pixels come back exactly.",
            inputs=[
                inputs.image("The original scene."),
                io.Image.Input("generated", tooltip="The decoded GCH result."),
                inputs.mask(),
                inputs.feather(),
                Region.Input(
                    "window",
                    optional=True,
                    tooltip="From DreamMix Local Replace: where in the original the generated image belongs when "
                    "GCH ran on a window. Not connected: the generated image is the whole scene.",
                ),
            ],
            outputs=[
                io.Image.Output("result", display_name="result", tooltip="The final image, at the original's size.")
            ],
        )

    @classmethod
    def execute(cls, image, generated, mask, feather, window: CropRegion | None = None) -> io.NodeOutput:
        if window is not None:
            _check_cut_from(image, window, "The window was cut")
        generated = put(image.to(generated.dtype), generated, window)
        return io.NodeOutput(to_host_dtype(final_composite(image, generated, mask, feather)))


class DreamMixInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixInpaint",
            display_name="DreamMix Inpaint",
            category=CATEGORY,
            description="The whole DreamMix inference: local content generation on a context crop, then global "
            "harmonization of the full image, composited so the background stays exact.",
            inputs=[
                *inputs.model_and_prompts(),
                inputs.image(
                    "The scene to inpaint, or a batch of scenes (each with its own crop and window; scenes whose "
                    "crops and windows share a size are sampled together)."
                ),
                inputs.mask(),
                *inputs.sampling(),
                inputs.context(),
                inputs.resolution(
                    "Working resolution of the local crop; 0 = the model family's native size "
                    "(512 for SD1.5, 1024 for SDXL)."
                ),
                inputs.feather(),
                inputs.global_max_area(
                    DEFAULT_MAX_AREA,
                    "GCH's pixel budget in units of the local crop's working area (resolution²: 4 = 1 MP for SD1.5, "
                    "4 MP for SDXL and FLUX at resolution 0). A larger scene is harmonised on a window around the "
                    "mask at its own pixel scale, as large as the budget allows; the rest of the scene is kept "
                    "exactly. 0 = always the whole scene (the paper).",
                ),
                inputs.variations(),
                io.Conditioning.Input(
                    "local_positive",
                    optional=True,
                    tooltip="Optional positive used by LCG only, e.g. the TAS-decomposed prompt; "
                    "GCH always uses 'positive'.",
                ),
                io.UpscaleModel.Input(
                    "upscale_model",
                    optional=True,
                    tooltip="Optional super-resolution model for crops smaller than the working size.",
                ),
            ],
            outputs=[
                io.Image.Output("result", display_name="result", tooltip="The inpainted image, at the input's size.")
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        vae,
        image,
        mask,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        switch,
        context_factor,
        resolution,
        feather,
        global_max_area=DEFAULT_MAX_AREA,
        variations=1,
        local_positive=None,
        upscale_model=None,
    ) -> io.NodeOutput:
        backend = _backend(model, vae, positive, negative, cfg, sampler_name, scheduler, local_positive)
        side = resolution or native_resolution(model)
        settings = InpaintSettings(steps, switch, seed, context_factor, side, feather, global_max_area, variations)
        result = dreammix_inpaint(backend, image, mask, settings, upscaler_from(upscale_model), CHECK_INTERRUPT)
        return io.NodeOutput(to_host_dtype(result))


NODES: list[type[io.ComfyNode]] = [
    DreamMixLocalCrop,
    DreamMixLocalSampler,
    DreamMixLocalReplace,
    DreamMixGlobalSampler,
    DreamMixComposite,
    DreamMixInpaint,
]
