"""Subject LoRA files as ComfyUI's LoRA loaders read them, whichever host trained them.

The layout is kohya's: `lora_unet_<module name with "." as "_">` followed by `.lora_down.weight`
(rank × in), `.lora_up.weight` (out × rank) and `.alpha`; the update of a weight W is
alpha / rank · up @ down. A UNet's modules go by their diffusers names, which ComfyUI maps for every UNet
it knows a diffusers layout of; a FLUX DiT's by ComfyUI's (= BFL's) names, as kohya's FLUX LoRAs
(`comfy.lora.model_lora_keys_unet` maps both); diffusers and kohya's tools read them too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import DreamMixInputError

CHECKPOINTS_SUFFIX = ".checkpoints"
"""A LoRA file's training checkpoints live in `<name>.checkpoints/` beside it."""


def kohya_key(module: str) -> str:
    """The key prefix of a module's LoRA, from its name (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k`,
    `single_blocks.0.linear1`)."""
    return "lora_unet_" + module.replace(".", "_")


def lora_state_dict(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], alpha: float) -> dict[str, torch.Tensor]:
    """{module name: (up, down)} → the file's tensors, fp32 on the CPU."""
    state = {}
    for module, (up, down) in pairs.items():
        key = kohya_key(module)
        state[f"{key}.lora_up.weight"] = up.detach().float().cpu().contiguous()
        state[f"{key}.lora_down.weight"] = down.detach().float().cpu().contiguous()
        state[f"{key}.alpha"] = torch.tensor(float(alpha))
    return state


def checkpoint_folder(lora_path: str) -> str:
    return lora_path.removesuffix(".safetensors") + CHECKPOINTS_SUFFIX


def refuse_existing(lora_path: str) -> None:
    """A trained LoRA is never overwritten: refused before training starts, so no time is spent on it."""
    if os.path.exists(lora_path):
        raise DreamMixInputError(
            f"The LoRA {os.path.basename(lora_path)} already exists in {os.path.dirname(lora_path)}: choose another "
            "name (existing LoRAs are never overwritten), or delete the file to train it again."
        )


@dataclass(frozen=True)
class TrainingRecord:
    """What a LoRA file says of its training (JSON under the "dreammix" metadata key)."""

    instance_prompt: str
    steps: int
    rank: int
    alpha: float
    seed: int
    resolution: int
    targets: str
    inpainting: bool
    family: str
    """The model family trained on (`families.family_name`); files from before it was recorded lack it."""


def check_lora_family(metadata: Mapping[str, str] | None, family: str) -> None:
    """Refuses a model that carries a DreamMix LoRA trained on another family, naming both.

    ComfyUI's LoRA loaders apply a file's layers wherever names and shapes match and only log the rest
    ("lora key not loaded"); FLUX.1 and FLUX.2 Klein 4B share block names and, 3072 wide, shapes, so a
    wrong pairing would otherwise run and quietly lose the subject. `metadata` is the LoRA file's.
    """
    try:
        record = json.loads((metadata or {}).get("dreammix", "{}"))
    except ValueError:  # another tool's "dreammix" entry
        return
    trained_on = record.get("family") if isinstance(record, dict) else None
    if trained_on and trained_on != family:
        raise DreamMixInputError(
            f"This model carries a DreamMix LoRA trained on {trained_on} (instance prompt "
            f"'{record.get('instance_prompt', '')}'), but it is a {family} model, whose layers that LoRA does not "
            f"fit: load the LoRA on a {trained_on} model, or train the subject on this one."
        )


def save_lora(path: str, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], record: TrainingRecord) -> None:
    """Write the LoRA with its training record and kohya's rank/alpha metadata.

    Refuses a file that appeared while training; a failed write says where the trained weights are kept
    (the last checkpoint, from which the same run resumes and only saves).
    """
    if os.path.exists(path):
        raise DreamMixInputError(
            f"{os.path.basename(path)} appeared while training; the trained weights stay in {checkpoint_folder(path)}."
        )
    metadata = {
        "dreammix": json.dumps(asdict(record)),
        "ss_network_dim": str(record.rank),
        "ss_network_alpha": str(record.alpha),
    }
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        save_file(lora_state_dict(pairs, record.alpha), path, metadata=metadata)
    except (OSError, SafetensorError) as error:  # safetensors reports a failed write as its own error
        raise DreamMixInputError(
            f"Training finished but {path} could not be written ({error}). The trained weights are kept in "
            f"{checkpoint_folder(path)}: fix the cause (disk space, permissions) and run the same training again; "
            "it resumes from there and only saves."
        ) from None
