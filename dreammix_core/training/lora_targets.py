"""Which linear layers a subject LoRA adapts, and which part of each (method.md §4: key, value and output).

Most denoisers have one linear layer per projection, so a recipe names whole layers: a UNet's (SD1.5, SD2, SDXL)
`attn1.to_k`, ...; Qwen-Image's MMDiT blocks (ComfyUI's and diffusers' names alike), whose image stream has
`attn.to_k`, `attn.to_v`, `attn.to_out.0` and whose text stream has `attn.add_k_proj`, `attn.add_v_proj`,
`attn.to_add_out`; diffusers' Z-Image, whose blocks name them `attention.to_k`, ... The FLUX DiTs (FLUX.1,
FLUX.1 Fill, FLUX.2) and ComfyUI's Z-Image fuse them:

* a FLUX double block's `img_attn.qkv` / `txt_attn.qkv` stack q, k and v along their output rows (thirds of
  3·h, h the hidden size = the input width); its `img_attn.proj` / `txt_attn.proj` is the attention output;
* a FLUX single block's `linear1` stacks q, k, v and then the MLP's input along its output rows, and its
  `linear2` reads the attention output (the first h input columns) beside the MLP's hidden state;
* a Z-Image (Lumina) block's `attention.qkv` stacks q (h rows) and then k and v (fewer rows each under grouped
  heads) along its output rows; `attention.out` is the attention output.

On a fused layer the LoRA is held to the recipe's part: its up matrix writes only the k and v rows (q, k, v
for the other recipe) and `linear2`'s down matrix reads only the attention columns, so the query (for the
DreamMix recipe) and the MLPs keep their base weights, as on a UNet. `restrict` makes that exact: the
entries outside the part start at zero and their gradients are masked, so AdamW (zero moments, decoupled
weight decay) leaves them at zero. The file still stores the whole fused layer's up and down matrices,
under the layer's own key, which ComfyUI's LoRA loaders patch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

KV_OUT = "attention k, v, out (DreamMix)"
QKV_OUT = "attention q, k, v, out"
PROJECTION_TARGETS = {
    KV_OUT: r"\.(attn\d*|attention)\.(to_k|to_v|to_out\.0|add_k_proj|add_v_proj|to_add_out)$",
    QKV_OUT: r"\.(attn\d*|attention)\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$",
}
"""The recipes (their names are the training node's choices, kept for saved workflows) as the unfused projection
layers they adapt, a regular expression searched in the module name (ComfyUI and diffusers name them alike)."""
RECIPES = tuple(PROJECTION_TARGETS)

_FUSED_QKV = re.compile(r"(^|\.)((img|txt)_attn\.qkv|single_blocks\.\d+\.linear1)$")
_ATTENTION_OUT = re.compile(r"(^|\.)((img|txt)_attn\.proj|attention\.out)$")
_FUSED_GROUPED_QKV = re.compile(r"(^|\.)attention\.qkv$")
_ATTENTION_AND_MLP_OUT = re.compile(r"(^|\.)single_blocks\.\d+\.linear2$")


@dataclass(frozen=True)
class Part:
    """The part of a linear layer's weight (out × in) a LoRA may change, as [start, stop) ranges; None: all."""

    rows: tuple[int, int] | None = None
    """The output rows the LoRA's up matrix may write."""
    columns: tuple[int, int] | None = None
    """The input columns its down matrix may read."""


WHOLE = Part()


def adapted_part(module: str, shape: tuple[int, ...], recipe: str) -> Part | None:
    """The part of `module` (its weight of `shape`, out × in) that `recipe` adapts; None: not adapted."""
    if recipe not in PROJECTION_TARGETS:
        raise ValueError(f"unknown LoRA recipe {recipe!r}: one of {list(RECIPES)}")
    if re.search(PROJECTION_TARGETS[recipe], module) or _ATTENTION_OUT.search(module):
        return WHOLE
    hidden = shape[1]
    if _FUSED_QKV.search(module):
        return Part(rows=(0 if recipe == QKV_OUT else hidden, 3 * hidden))
    if _FUSED_GROUPED_QKV.search(module):
        return Part(rows=(0 if recipe == QKV_OUT else hidden, shape[0]))
    if _ATTENTION_AND_MLP_OUT.search(module):
        return Part(columns=(0, shape[0]))
    return None


def restrict(up: torch.Tensor, down: torch.Tensor, part: Part) -> None:
    """Hold the LoRA (up: out × rank, down: rank × in, leaf tensors) to `part`: the entries outside it are set to
    zero now and get a zero gradient in every backward pass."""
    if part == WHOLE:
        return
    up_mask = torch.zeros(up.shape[0], 1)
    up_mask[slice(*part.rows or (None,))] = 1
    down_mask = torch.zeros(1, down.shape[1])
    down_mask[:, slice(*part.columns or (None,))] = 1
    for tensor, mask in ((up, up_mask), (down, down_mask)):
        with torch.no_grad():
            tensor.mul_(mask.to(tensor.device, tensor.dtype))
        tensor.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device, grad.dtype))
