"""The working side a model family was trained at: what resolution 0 means in every node.

The families share latent formats: SD1.x and SD2.x use the SD1.5 latent; SD2's v-prediction models
were trained at 768, its epsilon ones (SD2-base, SD2-inpainting) at 512; SDXL, SD3, FLUX and the
later families at about a megapixel.
"""

SD_LATENT = "SD15"
"""ComfyUI's latent format class of the SD1.x / SD2.x family."""


def native_side(latent_format: str, v_prediction: bool) -> int:
    """512, 768 or 1024 for a ComfyUI latent format class name and whether the model predicts v."""
    if latent_format == SD_LATENT:
        return 768 if v_prediction else 512
    return 1024
