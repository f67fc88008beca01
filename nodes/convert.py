"""Conversions between ComfyUI's image tensors and what transformers' processors take."""

import numpy as np
import torch
from PIL import Image


def to_pil(images: torch.Tensor | list[torch.Tensor]) -> list[Image.Image]:
    """ComfyUI IMAGE (batch, height, width, channels), or a list of (height, width, channels), in [0, 1] → RGB PIL."""
    return [Image.fromarray((image[..., :3].cpu().float().numpy() * 255).round().astype(np.uint8)) for image in images]
