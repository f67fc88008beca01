"""Model families: the side each was trained at (what resolution 0 means in every node), what a LoRA file records
it was trained on, and what messages call a model.

A family is told by its latent format (ComfyUI's class names, which the diffusers host maps its UNets to) and,
where two families share one, by the width of the text conditioning or the prediction type: SD1.x and SD2.x both
use the SD1.5 latent, with 768- and 1024-wide conditioning; SD2's v-prediction models were trained at 768, its
epsilon ones (SD2-base, SD2-inpainting) at 512; SDXL, SD3, FLUX, Z-Image and Qwen-Image (1328² its largest
square bucket) at about a megapixel.
"""

from __future__ import annotations

SD_LATENT = "SD15"
"""ComfyUI's latent format class of the SD1.x / SD2.x family."""
_NAMES = {SD_LATENT: "SD1.5", "SDXL": "SDXL", "Flux": "FLUX.1", "Flux2": "FLUX.2"}
_BORROWED_LATENTS = {"QwenImage": "Qwen-Image", "ZImage": "Z-Image"}
_SD2_CONTEXT = 1024


def family_name(latent_format: str, context_width: int | None, model_class: str = "") -> str:
    """The name: SD1.5, SD2, SDXL, FLUX.1, FLUX.2, Qwen-Image, Z-Image, or the latent format's own for any other
    family. `model_class` (ComfyUI's supported-model class) tells the families that borrow another's latent
    format: Z-Image FLUX.1's, Qwen-Image Wan 2.1's."""
    if model_class in _BORROWED_LATENTS:
        return _BORROWED_LATENTS[model_class]
    if latent_format == SD_LATENT and context_width == _SD2_CONTEXT:
        return "SD2"
    return _NAMES.get(latent_format, latent_format)


def native_side(latent_format: str, v_prediction: bool) -> int:
    """512, 768 or 1024 for a ComfyUI latent format class name and whether the model predicts v."""
    if latent_format == SD_LATENT:
        return 768 if v_prediction else 512
    return 1024
