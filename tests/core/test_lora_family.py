"""A LoRA file names the family it was trained on, and a model of another family carrying it is refused."""

from __future__ import annotations

import json

import pytest

from dreammix_core.errors import DreamMixInputError
from dreammix_core.families import family_name
from dreammix_core.training.lora_file import check_lora_family


@pytest.mark.parametrize(
    ("latent_format", "context", "model_class", "family"),
    [
        ("SD15", 768, "SD15", "SD1.5"),  # SD1.x: CLIP-L
        ("SD15", 1024, "SD20", "SD2"),  # SD2.x: OpenCLIP-H, same latent
        ("SDXL", 2048, "SDXL", "SDXL"),
        ("Flux", 4096, "Flux", "FLUX.1"),
        ("Flux", 768, "FluxInpaint", "FLUX.1"),  # the tests' tiny DiTs: the latent decides, not the width
        ("Flux2", 7680, "Flux2", "FLUX.2"),
        ("Flux", 2560, "ZImage", "Z-Image"),  # FLUX.1's ae, but another model
        ("Wan21", 3584, "QwenImage", "Qwen-Image"),  # Wan 2.1's VAE
        ("SD3", 4096, "SD3", "SD3"),  # unknown to the pack: its ComfyUI name
    ],
)
def test_family_names(latent_format: str, context: int, model_class: str, family: str) -> None:
    assert family_name(latent_format, context, model_class) == family


def metadata(**record: object) -> dict[str, str]:
    return {"dreammix": json.dumps(record), "ss_network_dim": "4"}


def test_a_lora_of_another_family_is_refused_by_name() -> None:
    with pytest.raises(DreamMixInputError) as error:
        check_lora_family(metadata(instance_prompt="a sks backpack", family="FLUX.2"), "FLUX.1")
    assert str(error.value) == (
        "This model carries a DreamMix LoRA trained on FLUX.2 (instance prompt 'a sks backpack'), but it is a FLUX.1 "
        "model, whose layers that LoRA does not fit: load the LoRA on a FLUX.2 model, or train the subject on this one."
    )


@pytest.mark.parametrize(
    "lora_metadata",
    [
        None,  # no LoRA, or ComfyUI older than v0.33 (no metadata attached)
        {},  # a LoRA without metadata
        {"ss_network_dim": "4"},  # another trainer's LoRA
        metadata(instance_prompt="a sks dog", steps=400),  # a DreamMix LoRA from before the family was recorded
        {"dreammix": "not json"},  # another tool's entry of that name
        {"dreammix": "[1, 2]"},
        metadata(instance_prompt="a sks dog", family="FLUX.1"),  # the same family
    ],
)
def test_anything_else_passes(lora_metadata: dict[str, str] | None) -> None:
    check_lora_family(lora_metadata, "FLUX.1")
