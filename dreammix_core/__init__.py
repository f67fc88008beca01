"""The DreamMix method, independent of any host: geometry, fill, blending and the LCG → GCH pipeline.

Nothing here imports ComfyUI; `nodes/` adapts it to ComfyUI and `diffusers_backend` to diffusers.
"""

from .errors import DreamMixInputError
from .inpainting.pipeline import DenoiseBackend, InpaintSettings, Stage, StageResult, dreammix_inpaint

__all__ = ["DenoiseBackend", "DreamMixInputError", "InpaintSettings", "Stage", "StageResult", "dreammix_inpaint"]
