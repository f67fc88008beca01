"""A ComfyUI UPSCALE_MODEL as the core's `Upscaler`: an image → larger image function for small crops."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch


def upscaler_from(upscale_model):
    """Wraps a ComfyUI UPSCALE_MODEL (spandrel) as an image → larger image function."""
    if upscale_model is None:
        return None

    def upscale(image: torch.Tensor) -> torch.Tensor:
        device = comfy.model_management.get_torch_device()
        comfy.model_management.free_memory(comfy.model_management.module_size(upscale_model.model), device)
        upscale_model.to(device)
        try:
            pixels = image.movedim(-1, 1).to(device)
            pbar = comfy.utils.ProgressBar(
                comfy.utils.get_tiled_scale_steps(pixels.shape[3], pixels.shape[2], 512, 512, 32)
            )
            out = comfy.utils.tiled_scale(
                pixels,
                lambda tile: upscale_model(tile),
                tile_x=512,
                tile_y=512,
                overlap=32,
                upscale_amount=upscale_model.scale,
                pbar=pbar,
            )
        finally:
            upscale_model.to("cpu")
        return out.movedim(1, -1).clamp(0, 1).cpu()

    return upscale
