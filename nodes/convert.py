"""Conversions between ComfyUI's tensors and what the core and transformers' processors take."""

import comfy.model_management
import numpy as np
import torch
from PIL import Image


def to_pil(images: torch.Tensor | list[torch.Tensor]) -> list[Image.Image]:
    """ComfyUI IMAGE (batch, height, width, channels), or a list of (height, width, channels), in [0, 1] → RGB PIL."""
    return [Image.fromarray((image[..., :3].cpu().float().numpy() * 255).round().astype(np.uint8)) for image in images]


def to_host_dtype(tensor: torch.Tensor) -> torch.Tensor:
    """An IMAGE or MASK the core computed in float32, in the dtype ComfyUI passes between nodes.

    That is fp16 under `--fp16-intermediates` (ComfyUI 0.3.7x and later; older versions have no
    `intermediate_dtype` and always pass float32).
    """
    intermediate_dtype = getattr(comfy.model_management, "intermediate_dtype", None)
    return tensor.to(intermediate_dtype() if intermediate_dtype else torch.float32)
