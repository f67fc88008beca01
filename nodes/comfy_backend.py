"""`DenoiseBackend` on ComfyUI's own samplers, schedulers, VAE and memory management."""

from __future__ import annotations

import comfy.model_base
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers
import torch

from ..dreammix_core.errors import DreamMixInputError
from ..dreammix_core.families import family_name, native_side
from ..dreammix_core.inpainting.pipeline import Stage, StageResult
from ..dreammix_core.training.lora_file import check_lora_family


def native_resolution(model) -> int:
    """What resolution 0 means for this MODEL: its family's training side (see dreammix_core.families)."""
    base = model.model
    v_prediction = "v_prediction" in str(getattr(base, "model_type", "")).lower()
    return native_side(type(base.latent_format).__name__, v_prediction)


def is_inpainting_model(model) -> bool:
    """True for models that take the mask and the masked image as extra input: 9-channel UNets, and
    FLUX.1 Fill, whose first layer takes more than twice the latent channels (noise + masked image +
    the mask folded 8x8; FLUX control models take only noise + image)."""
    base = model.model
    if "masked_image" in getattr(base, "concat_keys", ()):
        return True
    config = base.model_config.unet_config
    return isinstance(base, comfy.model_base.Flux) and config.get("in_channels", 0) > 2 * config.get("out_channels", 0)


def context_width(model) -> int | None:
    """The width of the text conditioning the model takes (768 SD1.5, 2048 SDXL, 4096 FLUX.1, 7680 FLUX.2
    Klein 4B, 3584 Qwen-Image, 2560 Z-Image), read from its detected config, else from the DiT's text input layer
    (Qwen-Image's config leaves it to the class default); None where neither states one."""
    config = model.model.model_config.unet_config
    width = config.get("context_dim") or config.get("context_in_dim") or config.get("cap_feat_dim")
    text_in = getattr(model.model.diffusion_model, "txt_in", None)
    return width or getattr(text_in, "in_features", None)


def model_family(model) -> str:
    """The MODEL's family name as LoRA files record it ("SD1.5", "SDXL", "FLUX.1", "FLUX.2", "Qwen-Image", ...)."""
    base = model.model
    return family_name(type(base.latent_format).__name__, context_width(model), type(base.model_config).__name__)


def check_model_inputs(model, vae, conditionings: dict[str, list | None]) -> None:
    """Refuses a VAE, a conditioning or a DreamMix LoRA of another model family before anything runs, with the
    fix; torch would otherwise stop deep inside the first layer with a shape error, or the LoRA silently miss.

    The LoRA is the last one a core LoRA loader applied: ComfyUI attaches its file's metadata to the MODEL
    (from v0.33; older versions attach none, and nothing is checked)."""
    check_lora_family(model.get_attachment("lora_metadata"), model_family(model))
    channels = model.model.latent_format.latent_channels
    vae_channels = getattr(vae, "latent_channels", channels)
    if vae_channels != channels:
        raise DreamMixInputError(
            f"The VAE makes {vae_channels}-channel latents but this model works on {channels}-channel ones: "
            "connect the model's own VAE (SD1.5/SDXL: the checkpoint's, FLUX.1 and Z-Image: ae, FLUX.2: the FLUX.2 "
            "VAE, Qwen-Image: its Wan 2.1 VAE)."
        )
    width = context_width(model)
    for name, conditioning in conditionings.items():
        for tensor, _ in conditioning or []:
            if width and tensor.shape[-1] != width:
                raise DreamMixInputError(
                    f"The {name} conditioning is {tensor.shape[-1]} wide but this model takes {width}: encode the "
                    "prompt with this model's own text encoder (SD1.5: CLIP-L, SDXL: CLIP-L + bigG, FLUX.1: "
                    "CLIP-L + T5-XXL, FLUX.2 Klein: Qwen3, Qwen-Image: Qwen2.5-VL 7B, Z-Image: Qwen3 4B)."
                )


def spatial_factor(vae) -> int:
    factor = vae.spacial_compression_encode()
    if not isinstance(factor, int):
        raise DreamMixInputError(
            "This VAE is not an image VAE with a fixed pixel-per-latent ratio: DreamMix needs one."
        )
    return factor


def vae_encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """A batch of images (B, H, W, C) as B latents. A video VAE (Qwen-Image's Wan 2.1) takes a batch as the frames
    of one clip and folds them in time, so there each image is encoded alone."""
    if vae.latent_dim == 3:
        return torch.cat([vae.encode(image[None, ..., :3]) for image in pixels])
    return vae.encode(pixels[..., :3])


def size_conditioning(conditioning: list, pixels: torch.Tensor) -> list:
    """SDXL's size conditioning set to the stage's own image (the crop in LCG), whatever the encoder set."""
    height, width = pixels.shape[1:3]
    return node_helpers.conditioning_set_values(
        conditioning,
        {
            "width": width,
            "height": height,
            "target_width": width,
            "target_height": height,
            "crop_w": 0,
            "crop_h": 0,
        },
    )


class ComfyBackend:
    """Runs each DreamMix stage as one `sample_custom` call over a slice of the full schedule.

    A slice starting at the switch step noises its input at that sigma with fresh noise, and a
    new call starts the sampler afresh, which is exactly GCH's restart. The progress callback
    is ComfyUI's own, so previews, the progress bar and Cancel work in both stages.
    """

    def __init__(
        self,
        model,
        vae,
        positive: list,
        negative: list,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        local_positive: list | None = None,
    ) -> None:
        self.model, self.vae = model, vae
        self.positive, self.negative = positive, negative
        self.local_positive = local_positive
        self.cfg, self.sampler_name, self.scheduler = cfg, sampler_name, scheduler
        self.spatial_factor = spatial_factor(vae)
        check_model_inputs(model, vae, {"positive": positive, "negative": negative, "local_positive": local_positive})

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return vae_encode(self.vae, pixels)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latent)
        return images.reshape((-1,) + tuple(images.shape[-3:]))

    def sigmas(self, steps: int) -> torch.Tensor:
        sampler = comfy.samplers.KSampler(
            self.model, steps, self.model.load_device, self.sampler_name, self.scheduler, 1.0, self.model.model_options
        )
        return sampler.sigmas

    def denoise(self, stage: Stage) -> StageResult:
        sigmas = self.sigmas(stage.steps)[stage.start : stage.end + 1]
        positive = self.local_positive if stage.name == "local" and self.local_positive is not None else self.positive
        positive = size_conditioning(positive, stage.pixels)
        negative = size_conditioning(self.negative, stage.pixels)
        mask = stage.per_item(stage.mask).unsqueeze(1)
        if is_inpainting_model(self.model):
            extra = {"concat_latent_image": stage.per_item(self.encode(stage.masked_pixels())), "concat_mask": mask}
            positive = node_helpers.conditioning_set_values(positive, extra)
            negative = node_helpers.conditioning_set_values(negative, extra)
        latent = comfy.sample.fix_empty_latent_channels(self.model, stage.latent)
        noise = stage.noise(lambda items: comfy.sample.prepare_noise(items, stage.seed))
        x0: dict = {}
        callback = latent_preview.prepare_callback(self.model, len(sigmas) - 1, x0)
        samples = comfy.sample.sample_custom(
            self.model,
            noise,
            self.cfg,
            comfy.samplers.sampler_object(self.sampler_name),
            sigmas,
            positive,
            negative,
            latent,
            noise_mask=mask,
            callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
            seed=stage.seed,
        )
        denoised = self.model.model.process_latent_out(x0["x0"].to(samples.device, samples.dtype))
        return StageResult(latent=samples, denoised=denoised)
