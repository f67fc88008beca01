"""The FLUX.1 Fill workflow: subject LoRA on the Fill model, edit prompt, TAS, FluxGuidance, DreamMix Inpaint.

test_workflows.py checks that the UI workflow loads and matches its API twin, as for every shipped workflow.
Here its API twin runs on the tiny random FLUX.1 Fill model and FLUX VAE (make_flux_models.py), loaded by the
workflow's own Load Diffusion Model and Load VAE nodes, with a tiny random LoRA for that model in the
workflow's LoRA loader. DualCLIPLoader only loads full-size CLIP-L and T5-XXL files, so the tiny SD1.5
checkpoint's CLIP-L stands in for it (the tiny DiT takes 768-wide conditioning); TAS on FLUX.1's real T5-XXL
tokenizer and encoder classes is measured by the probe (test_attributes.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from server import ComfyServer
from test_flux import available
from test_workflows import (
    SIZE,
    api_without_meta,
    assert_background_exact,
    cached_nodes,
    id_of,
    prepared_graph,
    saved_image,
    scene,
    subject_mask,
    with_alpha,
)

# FLUX runs on ComfyUI v0.33 (test_flux.available skips elsewhere); the static checks run on every version.
NAME = "dreammix_flux_fill_attribute_edit"
UNET, VAE = "tiny_flux1_fill", "tiny_flux1_vae"
LORA = "tiny_flux_fill_subject.safetensors"
LORA_RANK = 4
LORA_TARGETS = ("img_attn.qkv", "img_attn.proj", "txt_attn.qkv", "txt_attn.proj", "linear1", "linear2")
"""Attention projections of the double and single blocks: the layers a FLUX subject LoRA trains."""


def test_api_twin_wires_tas_guidance_and_the_lora() -> None:
    """decomposed → FluxGuidance → local_positive (LCG), plain → FluxGuidance → positive (GCH); the LoRA sits
    between Load Diffusion Model and DreamMix Inpaint; cfg 1 with a flow sampler, as FLUX is run."""
    graph = api_without_meta(NAME)
    tas, inpaint, lora = (id_of(graph, kind) for kind in ("DreamMixTAS", "DreamMixInpaint", "LoraLoaderModelOnly"))
    inputs = graph[inpaint]["inputs"]
    local, plain = graph[inputs["local_positive"][0]], graph[inputs["positive"][0]]
    assert local == {"class_type": "FluxGuidance", "inputs": {"conditioning": [tas, 0], "guidance": 30.0}}
    assert plain == {"class_type": "FluxGuidance", "inputs": {"conditioning": [tas, 1], "guidance": 30.0}}
    assert inputs["model"] == [lora, 0]
    assert graph[graph[lora]["inputs"]["model"][0]]["class_type"] == "UNETLoader"
    assert graph[inputs["vae"][0]]["class_type"] == "VAELoader"
    clip = graph[graph[tas]["inputs"]["clip"][0]]
    assert clip["class_type"] == "DualCLIPLoader" and clip["inputs"]["type"] == "flux"
    assert (inputs["cfg"], inputs["sampler_name"], inputs["scheduler"]) == (1.0, "euler", "simple")


@pytest.fixture(scope="module")
def lora_name(comfy_server: ComfyServer, flux_folder: Path) -> str:
    """A random rank-4 LoRA on the tiny Fill model's attention projections, in ComfyUI's generic key format; its
    update is about as large as the random weights (std 0.02), so it shows in the image without swamping it."""
    available(flux_folder, UNET)
    generator = torch.Generator().manual_seed(3)
    tensors = {}
    with safe_open(flux_folder / "diffusion_models" / f"{UNET}.safetensors", "pt") as model:
        for key in model.keys():
            layer = key.removesuffix(".weight")
            if key.endswith(".weight") and layer.endswith(LORA_TARGETS):
                rows, cols = model.get_slice(key).get_shape()
                down, up = (
                    torch.randn(LORA_RANK, cols, generator=generator),
                    torch.randn(rows, LORA_RANK, generator=generator),
                )
                tensors[f"diffusion_model.{layer}.lora_down.weight"] = 0.1 * down
                tensors[f"diffusion_model.{layer}.lora_up.weight"] = 0.1 * up
    assert len(tensors) == 2 * len(LORA_TARGETS)  # the tiny model has one double and one single block
    save_file(tensors, comfy_server.layout.loras_dir / LORA)
    return LORA


def workflow_graph(server: ComfyServer, lora: str, prefix: str, lora_strength: float = 1.0) -> dict[str, Any]:
    """The API twin on the tiny models: the tiny SD1.5 checkpoint's CLIP-L in place of DualCLIPLoader."""
    image = server.upload_image(with_alpha(scene(*SIZE), subject_mask(*SIZE)), "dreammix_flux_workflow.png")
    graph = prepared_graph(NAME, "tiny_sd15", image, prefix)
    on_tiny_models(graph, UNET, VAE, "DualCLIPLoader")
    graph[id_of(graph, "LoraLoaderModelOnly")]["inputs"].update(lora_name=lora, strength_model=lora_strength)
    return graph


def on_tiny_models(graph: dict[str, Any], unet: str, vae: str, clip_loader: str) -> None:
    """A FLUX twin's Load Diffusion Model and Load VAE on the tiny files, and the tiny SD1.5 checkpoint's CLIP-L in
    place of its text-encoder loader (which takes only full-size encoders; the tiny DiTs take 768-wide context)."""
    graph[id_of(graph, "UNETLoader")]["inputs"]["unet_name"] = f"{unet}.safetensors"
    graph[id_of(graph, "VAELoader")]["inputs"]["vae_name"] = f"{vae}.safetensors"
    clip = id_of(graph, clip_loader)
    graph[clip] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}}
    for node in graph.values():
        for name, value in node["inputs"].items():
            if value == [clip, 0]:
                node["inputs"][name] = [clip, 1]


def test_flux_fill_workflow_keeps_background_exact_and_uses_the_lora(
    comfy_server: ComfyServer, flux_folder: Path, lora_name: str
) -> None:
    available(flux_folder, UNET)
    graph = workflow_graph(comfy_server, lora_name, "flux_workflow")
    log_before = len(comfy_server.log_text())
    entry = comfy_server.run(graph)
    result = saved_image(comfy_server, entry, graph)
    mask = subject_mask(*SIZE)
    assert_background_exact(result, scene(*SIZE), mask)
    assert "lora key not loaded" not in comfy_server.log_text()[log_before:]
    for kind in ("DreamMixTAS", "DreamMixInpaint", "LoraLoaderModelOnly"):
        assert id_of(graph, kind) not in cached_nodes(entry), f"{kind} was served from the cache"

    without = copy.deepcopy(graph)
    without[id_of(without, "LoraLoaderModelOnly")]["inputs"]["strength_model"] = 0.0
    without[id_of(without, "SaveImage")]["inputs"]["filename_prefix"] = "flux_workflow_no_lora"
    plain = saved_image(comfy_server, comfy_server.run(without), without)
    assert_background_exact(plain, scene(*SIZE), mask)
    assert not np.array_equal(plain[mask], result[mask]), "the LoRA changed nothing inside the mask"
