"""Model family names: what a LoRA file records it was trained on, and what messages call a model.

A family is told by its latent format (ComfyUI's class names, which the diffusers host maps its UNets
to) and, where two families share one, by the width of the text conditioning: SD1.x and SD2.x both
use the SD1.5 latent, with 768- and 1024-wide conditioning.
"""

from __future__ import annotations

from .inpainting.native_size import SD_LATENT

_NAMES = {SD_LATENT: "SD1.5", "SDXL": "SDXL", "Flux": "FLUX.1", "Flux2": "FLUX.2"}
_SD2_CONTEXT = 1024


def family_name(latent_format: str, context_width: int | None) -> str:
    """The name: SD1.5, SD2, SDXL, FLUX.1, FLUX.2, or the latent format's own for any other family."""
    if latent_format == SD_LATENT and context_width == _SD2_CONTEXT:
        return "SD2"
    return _NAMES.get(latent_format, latent_format)
