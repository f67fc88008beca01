"""Transformers models (VLM, CLIP, DINO) under ComfyUI's memory management.

Each model is loaded once per source and wrapped in a ModelPatcher, so ComfyUI places it on the
device, evicts other models to make room, and offloads it again when something else needs memory.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import comfy.model_management
import comfy.model_patcher
import torch


class _Holder(torch.nn.Module):
    """ModelPatcher records its device on the module; transformers models make `device` read-only."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.held = model


_PATCHERS: dict[Hashable, comfy.model_patcher.ModelPatcher] = {}


def managed_model(key: Hashable, load: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The model for `key` (loaded by `load` the first time), on ComfyUI's device and ready to run."""
    if key not in _PATCHERS:
        model = load()
        _PATCHERS[key] = comfy.model_patcher.ModelPatcher(
            _Holder(model),
            load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device(),
            size=comfy.model_management.module_size(model),
        )
    patcher = _PATCHERS[key]
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    return patcher.model.held
