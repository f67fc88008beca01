"""Inputs of list-input nodes (`is_input_list=True`), which ComfyUI calls once with every input as a list.

Such nodes receive photos of different sizes together (DreamMix Subject Photos' list outputs), and
their widget inputs arrive as one-value lists.
"""

from __future__ import annotations

from typing import Any

import torch

from ..dreammix_core.errors import DreamMixInputError


def first_value(value: Any) -> Any:
    """The single value of a scalar input."""
    return value[0] if isinstance(value, list) else value


def flat_list(images: Any, what: str) -> list[torch.Tensor]:
    """A list input of IMAGE ("image") or MASK ("mask") batches of any sizes as a flat list of single ones."""
    out = []
    for item in images if isinstance(images, list) else [images]:
        if item is None:
            continue
        if item.ndim == (4 if what == "image" else 3):
            out.extend(item.unbind(0))
        elif item.ndim == (3 if what == "image" else 2):
            out.append(item)
        else:
            raise DreamMixInputError(f"Unexpected {what} shape {tuple(item.shape)}.")
    return out
