"""The DreamMix method, independent of any host, one sub-package per part of the paper.

  inpainting/   LCG → GCH: crop geometry, fill, blending, the switch, the pipeline (§3.3)
  attributes/   prompts, Textual Attribute Substitution, the VLM attribute list (§3.4)
  training/     the Attribute Decoupling Mechanism's data and the subject LoRA fine-tune (§3.2)
  evaluation/   CLIP-T, CLIP-I and DINO (§4)
over the shared rules: `errors`, `masks`, `families`, `paths`, `model_source`, `model_cache`.

Nothing here imports ComfyUI; `nodes/` adapts it to ComfyUI and `inpainting.diffusers_backend` to diffusers.
"""

from .errors import DreamMixInputError
from .inpainting.pipeline import DenoiseBackend, InpaintSettings, Stage, StageResult, dreammix_inpaint

__all__ = ["DenoiseBackend", "DreamMixInputError", "InpaintSettings", "Stage", "StageResult", "dreammix_inpaint"]
