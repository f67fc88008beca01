"""Transformers models (VLM, CLIP, DINO) under ComfyUI's memory management.

Each model is loaded once per source (kept in the core's one `ModelCache`) and wrapped in a
ModelPatcher, so ComfyUI places it on the device, evicts other models to make room, and offloads
it again when something else needs memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import TypeVar

import comfy.model_management
import comfy.model_patcher
import folder_paths
import torch

from ..dreammix_core.model_cache import ModelCache
from ..dreammix_core.model_source import looks_like_path
from ..dreammix_core.paths import confined_path

T = TypeVar("T")


class _Holder(torch.nn.Module):
    """ModelPatcher records its device on the module; transformers models make `device` read-only."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.held = model


_PATCHERS: ModelCache[tuple[comfy.model_patcher.ModelPatcher, object]] = ModelCache(size=4)


def managed_model(key: Hashable, load: Callable[[], tuple[torch.nn.Module, T]]) -> tuple[torch.nn.Module, T]:
    """(model, companion) for `key`: `load` returns the model and what goes with it (its processor, its
    metric wrapper) the first time; the model is on ComfyUI's device and ready to run."""

    def wrap() -> tuple[comfy.model_patcher.ModelPatcher, T]:
        model, companion = load()
        patcher = comfy.model_patcher.ModelPatcher(
            _Holder(model),
            load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device(),
            size=comfy.model_management.module_size(model),
        )
        return patcher, companion

    patcher, companion = _PATCHERS.get(key, wrap)
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    return patcher.model.held, companion


def model_source(source: str, what: str) -> str:
    """A model typed in a node: a folder inside ComfyUI's models folder, or a Hugging Face id (local cache).

    A relative folder is looked up under models/ first; a path leading anywhere else is refused, so a node
    never reads outside ComfyUI's folders.
    """
    source = source.strip()
    models = folder_paths.models_dir
    if looks_like_path(source) or ("\0" not in source and os.path.isdir(os.path.join(models, source))):
        return confined_path(models, source, what)
    return source
