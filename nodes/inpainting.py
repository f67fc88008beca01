"""DreamMix inference nodes: LCG → GCH, granular and one-shot. Thin adapters to `dreammix_core`."""

from __future__ import annotations

import comfy.model_management
from comfy_api.latest import io

from ..dreammix_core.errors import DreamMixInputError
from ..dreammix_core.inpainting.blend import FEATHER
from ..dreammix_core.inpainting.pipeline import (
    InpaintSettings,
    dreammix_inpaint,
    final_composite,
    fresh_seed,
    global_harmonization,
    local_generation,
    pad_for_latent,
    prepare_global,
    prepare_local,
    repeat,
    replace_local,
    stitch,
)
from ..dreammix_core.inpainting.region import validate_image_and_mask
from ..dreammix_core.inpainting.scene import Scene
from ..dreammix_core.inpainting.window import DEFAULT_MAX_AREA, cut
from ..dreammix_core.masks import binarize
from . import inputs
from .comfy_backend import ComfyBackend, native_resolution, spatial_factor, vae_encode
from .convert import to_host_dtype
from .upscale import upscaler_from

CATEGORY = "DreamMix/inpaint"
Region = io.Custom("DREAMMIX_REGION")
"""A `Scene`: the image, its mask and feather, LCG's crop region and (after Local Replace) GCH's window."""

CHECK_INTERRUPT = comfy.model_management.throw_exception_if_processing_interrupted
"""Raises when the user pressed Cancel; the core calls it between the steps it runs itself."""
LCG_RAN_KEY = "dreammix_lcg_ran"
"""Set on the LCG output LATENT so the replacement node knows when LCG did not run (λ = 1): the LATENT is the
only link from DreamMix LCG Sampler to Local Replace."""
FROM_THE_CROP = -1
"""The feather value of Local Replace and Composite that means "DreamMix Local Crop's"."""


def _rewiring_inputs() -> list:
    """Local Replace's and Composite's image, mask and feather: the scene already carries them, so they are optional
    (workflows saved before the scene record wired them, and a connected one replaces the scene's)."""
    return [
        io.Image.Input("image", optional=True, tooltip="Optional: the original scene, if not the one cropped."),
        io.Mask.Input("mask", optional=True, tooltip="Optional: a mask other than the one cropped, of its size."),
        io.Int.Input(
            "feather",
            default=FROM_THE_CROP,
            min=FROM_THE_CROP,
            max=256,
            optional=True,
            tooltip="Pixels of linear ramp outside the mask; beyond it the original pixels come back exactly. "
            "-1 = the feather set on DreamMix Local Crop.",
        ),
    ]


def _rewired(scene: Scene, image, mask, feather: int) -> Scene:
    return scene.rewired(image, mask, None if feather == FROM_THE_CROP else feather)


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
                    tooltip="The scene: image, mask, feather and where the crop lies, for DreamMix Local Replace.",
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
        scene, local_image, local_mask = prepare_local(
            image, mask, context_factor, resolution, feather, upscaler_from(upscale_model), CHECK_INTERRUPT
        )
        return io.NodeOutput(to_host_dtype(local_image), to_host_dtype(local_mask), scene)


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
        cls, model, positive, negative, vae, local_image, local_mask, variations=1, **sampling
    ) -> io.NodeOutput:
        run = inputs.Sampling(**sampling)
        backend = ComfyBackend(model, vae, positive, negative, run.cfg, run.sampler_name, run.scheduler)
        local_mask = validate_image_and_mask(local_image, local_mask)
        split = run.split
        if split.runs_local:
            latent = local_generation(
                backend, local_image, local_mask, run.steps, split.switch_at, run.seed, variations
            )
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
                *_rewiring_inputs(),
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
                    tooltip="The scene with where GCH runs in it (the whole scene within the budget), for DreamMix "
                    "Composite.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls, vae, local_latent, region: Scene, image=None, mask=None, feather=FROM_THE_CROP, global_max_area=0.0
    ) -> io.NodeOutput:
        scene = _rewired(region, image, mask, feather).windowed(global_max_area)
        composite = repeat(scene.image[..., :3], local_latent["samples"].shape[0])  # one per variation
        if local_latent.get(LCG_RAN_KEY, True):
            local = vae.decode(local_latent["samples"])
            composite = replace_local(scene, local.reshape((-1,) + tuple(local.shape[-3:])))
        pixels, padded_mask = prepare_global(scene, composite, spatial_factor(vae))
        latent = {"samples": vae_encode(vae, pixels), "noise_mask": padded_mask.unsqueeze(1)}
        return io.NodeOutput(latent, to_host_dtype(cut(composite, scene.window)), scene)


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
    def execute(cls, model, positive, negative, vae, latent, composite, **sampling) -> io.NodeOutput:
        run = inputs.Sampling(**sampling)
        backend = ComfyBackend(model, vae, positive, negative, run.cfg, run.sampler_name, run.scheduler)
        if "noise_mask" not in latent:
            raise DreamMixInputError("The latent has no noise mask: connect DreamMix Local Replace's latent.")
        mask = latent["noise_mask"].reshape((-1,) + tuple(latent["noise_mask"].shape[-2:]))
        pixels, mask = pad_for_latent(composite, binarize(mask), backend.spatial_factor)
        if tuple(pixels.shape[1:3]) != tuple(mask.shape[-2:]):
            raise DreamMixInputError(
                "The composite image and the latent's mask differ in size: connect both "
                "outputs of the same DreamMix Local Replace."
            )
        split = run.split
        if not split.runs_global:
            return io.NodeOutput(latent)
        out = global_harmonization(
            backend, pixels, mask, run.steps, split.switch_at, fresh_seed(run.seed), latent=latent["samples"]
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
                *_rewiring_inputs()[:1],
                io.Image.Input("generated", optional=True, tooltip="The decoded GCH result (required)."),
                *_rewiring_inputs()[1:],
                Region.Input(
                    "window",
                    optional=True,
                    tooltip="From DreamMix Local Replace: the scene, and where in it the generated image belongs "
                    "when GCH ran on a window. Not connected: connect the image and mask; the generated image is "
                    "then the whole scene.",
                ),
            ],
            outputs=[
                io.Image.Output("result", display_name="result", tooltip="The final image, at the original's size.")
            ],
        )

    @classmethod
    def execute(
        cls, image=None, generated=None, mask=None, feather=FROM_THE_CROP, window: Scene | None = None
    ) -> io.NodeOutput:
        if generated is None:
            raise DreamMixInputError("Connect the decoded GCH result (VAE Decode's IMAGE) to 'generated'.")
        if window is not None:
            return io.NodeOutput(to_host_dtype(stitch(_rewired(window, image, mask, feather), generated)))
        if image is None or mask is None:
            raise DreamMixInputError(
                "Connect DreamMix Local Replace's 'window' to DreamMix Composite, or the original image and its mask."
            )
        feather = FEATHER if feather == FROM_THE_CROP else feather
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
        cls, model, positive, negative, vae, image, mask, local_positive=None, upscale_model=None, **options
    ) -> io.NodeOutput:
        """`options`: the sampling inputs and the scene's (context_factor, resolution, feather, and global_max_area
        and variations, which workflows saved before them lack)."""
        run = inputs.Sampling.pop_from(options)
        backend = ComfyBackend(model, vae, positive, negative, run.cfg, run.sampler_name, run.scheduler, local_positive)
        options["resolution"] = options["resolution"] or native_resolution(model)
        scene = {"global_max_area": DEFAULT_MAX_AREA, **options}
        settings = InpaintSettings(run.steps, run.switch, run.seed, **scene)
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
