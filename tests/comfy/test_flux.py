"""DreamMix on FLUX: the same nodes take a FLUX.1 [dev], FLUX.1 Fill or FLUX.2 diffusion model.

Tiny random DiTs and VAEs built with ComfyUI's own classes (make_flux_models.py) load through
UNETLoader and VAELoader as a user's real files do; the prompt is CLIP-L conditioning from the tiny
SD1.5 checkpoint, which the 768-wide tiny DiTs take. Every run keeps the background exact; bad
pairings (an SD VAE, CLIP-L conditioning for a T5-wide model) are refused by name before sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from server import ComfyServer
from test_workflows import (
    SIZE,
    assert_background_exact,
    node_refusal,
    saved_image,
    scene,
    subject_mask,
    with_alpha,
)

STEPS = 3
FAMILIES = {  # diffusion model -> its VAE
    "tiny_flux1": "tiny_flux1_vae",
    "tiny_flux1_fill": "tiny_flux1_vae",
    "tiny_flux2": "tiny_flux2_vae",
}
SAMPLING = {"seed": 5, "steps": STEPS, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "switch": 0.333}


def flux_graph(unet: str, vae: str | None, image: str, prefix: str, granular: bool = False) -> dict[str, Any]:
    """UNETLoader + VAELoader + CLIP-L prompts + FluxGuidance into DreamMix Inpaint (or its granular chain);
    `vae` None takes the SD1.5 checkpoint's VAE."""
    vae_out = ["vae", 0] if vae else ["ckpt", 2]
    graph: dict[str, Any] = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": f"{unet}.safetensors", "weight_dtype": "default"}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a sks backpack", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "guided": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["pos", 0], "guidance": 3.5}},
        "img": {"class_type": "LoadImage", "inputs": {"image": image}},
        "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["result", 0]}},
    }
    if vae:
        graph["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": f"{vae}.safetensors"}}
    model = {"model": ["unet", 0], "positive": ["guided", 0], "negative": ["neg", 0], "vae": vae_out}
    scene_inputs = {"image": ["img", 0], "mask": ["img", 1]}
    if not granular:
        graph["result"] = {
            "class_type": "DreamMixInpaint",
            "inputs": {**model, **scene_inputs, **SAMPLING, "context_factor": 0.5, "resolution": 256, "feather": 32},
        }
        return graph
    graph |= {
        "crop": {
            "class_type": "DreamMixLocalCrop",
            "inputs": {**scene_inputs, "resolution": 256, "context_factor": 0.5, "feather": 32, "model": ["unet", 0]},
        },
        "lcg": {
            "class_type": "DreamMixLocalSampler",
            "inputs": {**model, "local_image": ["crop", 0], "local_mask": ["crop", 1], **SAMPLING},
        },
        "replace": {
            "class_type": "DreamMixLocalReplace",
            "inputs": {
                "vae": vae_out,
                "local_latent": ["lcg", 0],
                "region": ["crop", 2],
                **scene_inputs,
                "feather": 32,
            },
        },
        "gch": {
            "class_type": "DreamMixGlobalSampler",
            "inputs": {**model, "latent": ["replace", 0], "composite": ["replace", 1], **SAMPLING},
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["gch", 0], "vae": vae_out}},
        "result": {
            "class_type": "DreamMixComposite",
            "inputs": {"image": ["img", 0], "generated": ["decode", 0], "mask": ["img", 1], "feather": 32},
        },
    }
    return graph


NOT_TINY = (
    "this ComfyUI detects no tiny {unet}: FLUX.2 arrived after v0.3.64, and v0.3.64 builds FLUX.1 at its real size "
    "(hidden 3072, T5-wide context) whatever the weights say"
)


def available(flux_folder: Path, unet: str) -> None:
    if not (flux_folder / "diffusion_models" / f"{unet}.safetensors").is_file():
        pytest.skip(NOT_TINY.format(unet=unet))


@pytest.fixture(scope="module")
def scene_image(comfy_server: ComfyServer) -> str:
    return comfy_server.upload_image(with_alpha(scene(*SIZE), subject_mask(*SIZE)), "dreammix_flux_scene.png")


@pytest.fixture(scope="module")
def one_shot() -> dict[str, np.ndarray]:
    """DreamMix Inpaint's result per family, filled by run_one_shot: each runs once for the tests below."""
    return {}


def run_one_shot(server: ComfyServer, image: str, unet: str, results: dict[str, np.ndarray]) -> np.ndarray:
    if unet not in results:
        graph = flux_graph(unet, FAMILIES[unet], image, f"flux_{unet}")
        results[unet] = saved_image(server, server.run(graph), graph)
    return results[unet]


@pytest.mark.parametrize("unet", FAMILIES)
def test_flux_inpaint_keeps_background_exact(
    unet: str, comfy_server: ComfyServer, flux_folder: Path, scene_image: str, one_shot: dict
) -> None:
    """320x240: FLUX.2's 16-pixel latent cell pads the 240 side, FLUX.1's patch of 2 cells fits it."""
    available(flux_folder, unet)
    result = run_one_shot(comfy_server, scene_image, unet, one_shot)
    assert_background_exact(result, scene(*SIZE), subject_mask(*SIZE))


def test_flux_fill_granular_chain_is_the_one_shot_node(
    comfy_server: ComfyServer, flux_folder: Path, scene_image: str, one_shot: dict
) -> None:
    """The granular nodes on FLUX.1 Fill (masked-image conditioning in both stages) give the one-shot result."""
    available(flux_folder, "tiny_flux1_fill")
    graph = flux_graph("tiny_flux1_fill", "tiny_flux1_vae", scene_image, "flux_fill_granular", granular=True)
    granular = saved_image(comfy_server, comfy_server.run(graph), graph)
    np.testing.assert_array_equal(granular, run_one_shot(comfy_server, scene_image, "tiny_flux1_fill", one_shot))


def test_an_sd_vae_with_a_flux_model_is_refused(comfy_server: ComfyServer, flux_folder: Path, scene_image: str) -> None:
    available(flux_folder, "tiny_flux1")
    graph = flux_graph("tiny_flux1", None, scene_image, "flux_sd_vae")
    assert node_refusal(comfy_server, graph, "DreamMixInpaint") == (
        "The VAE makes 4-channel latents but this model works on 16-channel ones: connect the model's own VAE "
        "(SD1.5/SDXL: the checkpoint's, FLUX.1 and Z-Image: ae, FLUX.2: the FLUX.2 VAE, Qwen-Image: its Wan 2.1 VAE)."
    )


def test_clip_l_conditioning_for_a_t5_wide_flux_is_refused(
    comfy_server: ComfyServer, flux_folder: Path, scene_image: str
) -> None:
    """Real FLUX.1 takes 4096-wide T5-XXL conditioning: CLIP-L's 768 alone is named, not a torch shape error."""
    available(flux_folder, "tiny_flux1_t5")
    graph = flux_graph("tiny_flux1_t5", "tiny_flux1_vae", scene_image, "flux_t5", granular=True)
    assert node_refusal(comfy_server, graph, "DreamMixLocalSampler") == (
        "The positive conditioning is 768 wide but this model takes 4096: encode the prompt with this model's own "
        "text encoder (SD1.5: CLIP-L, SDXL: CLIP-L + bigG, FLUX.1: CLIP-L + T5-XXL, FLUX.2 Klein: Qwen3, Qwen-Image: "
        "Qwen2.5-VL 7B, Z-Image: Qwen3 4B)."
    )


def test_flux_fill_gch_only_is_comfyuis_own_fill_inpaint(
    comfy_server: ComfyServer, flux_folder: Path, scene_image: str
) -> None:
    """switch 1 leaves only GCH, a plain full-image inpaint: inside the mask it must be ComfyUI's own FLUX Fill
    inpaint (InpaintModelConditioning + KSampler, GCH's seed), so the masked image and the mask reach the model
    as that node sends them."""
    available(flux_folder, "tiny_flux1_fill")
    graph = flux_graph("tiny_flux1_fill", "tiny_flux1_vae", scene_image, "flux_fill_gch")
    graph["result"]["inputs"]["switch"] = 1.0
    ours = saved_image(comfy_server, comfy_server.run(graph), graph)
    native = {key: graph[key] for key in ("ckpt", "unet", "vae", "pos", "neg", "guided", "img")} | {
        "cond": {
            "class_type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["guided", 0],
                "negative": ["neg", 0],
                "vae": ["vae", 0],
                "pixels": ["img", 0],
                "mask": ["img", 1],
                "noise_mask": True,
            },
        },
        "sample": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["unet", 0],
                "positive": ["cond", 0],
                "negative": ["cond", 1],
                "latent_image": ["cond", 2],
                **{key: SAMPLING[key] for key in ("steps", "cfg", "sampler_name", "scheduler")},
                "seed": SAMPLING["seed"] + 1,  # GCH's fresh seed
                "denoise": 1.0,
            },
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["vae", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux_fill_native", "images": ["decode", 0]}},
    }
    theirs = saved_image(comfy_server, comfy_server.run(native), native)
    mask = subject_mask(*SIZE)
    np.testing.assert_array_equal(ours[mask], theirs[mask])


def with_dreammix_lora(server: ComfyServer, flux_folder: Path, graph: dict[str, Any], family: str) -> None:
    """LoraLoaderModelOnly between the diffusion model and DreamMix Inpaint, on a LoRA file that says it was trained on
    `family`: one zero-update layer that fits the tiny FLUX.1 (so ComfyUI loads it without complaint)."""
    with safe_open(flux_folder / "diffusion_models" / "tiny_flux1.safetensors", "pt") as model:
        rows, cols = model.get_slice("double_blocks.0.img_attn.proj.weight").get_shape()
    key = "lora_unet_double_blocks_0_img_attn_proj"
    name = f"dreammix_family_{family}.safetensors"
    record = {"instance_prompt": "a sks backpack", "steps": 1, "rank": 4, "family": family}
    tensors = {f"{key}.lora_up.weight": torch.zeros(rows, 4), f"{key}.lora_down.weight": torch.zeros(4, cols)}
    save_file(tensors, server.layout.loras_dir / name, metadata={"dreammix": json.dumps(record)})
    graph["lora"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["unet", 0], "lora_name": name, "strength_model": 1.0},
    }
    graph["result"]["inputs"]["model"] = ["lora", 0]


def test_a_dreammix_lora_of_another_family_is_refused(
    comfy_server: ComfyServer, flux_folder: Path, scene_image: str
) -> None:
    """FLUX.2 Klein 4B and FLUX.1 share block names and (3072 wide) shapes, so ComfyUI would apply the layers that fit:
    the LoRA's recorded family is checked against the model's (ComfyUI attaches a LoRA's metadata from v0.33)."""
    available(flux_folder, "tiny_flux1")
    graph = flux_graph("tiny_flux1", "tiny_flux1_vae", scene_image, "flux_lora_family")
    with_dreammix_lora(comfy_server, flux_folder, graph, "FLUX.2")
    assert node_refusal(comfy_server, graph, "DreamMixInpaint") == (
        "This model carries a DreamMix LoRA trained on FLUX.2 (instance prompt 'a sks backpack'), but it is a FLUX.1 "
        "model, whose layers that LoRA does not fit: load the LoRA on a FLUX.2 model, or train the subject on this one."
    )
    with_dreammix_lora(comfy_server, flux_folder, graph, "FLUX.1")
    result = saved_image(comfy_server, comfy_server.run(graph), graph)
    assert_background_exact(result, scene(*SIZE), subject_mask(*SIZE))
