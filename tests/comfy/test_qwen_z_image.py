"""DreamMix on Qwen-Image (and its Edit conditioning) and Z-Image: the same nodes take their diffusion models.

Tiny random DiTs built with ComfyUI's own classes (make_qwen_models.py) load through UNETLoader and VAELoader as a
user's real files do. Z-Image's tiny DiT takes 768-wide conditioning, so the tiny SD1.5 checkpoint's CLIP-L gives
its prompt; Qwen-Image's context is fixed at Qwen2.5-VL's 3584, so a one-layer Qwen2.5-VL gives its prompt through
the test-only DreamMixTestTextEncoderLoader (ComfyUI's loading code with the shrunk config). Qwen-Image samples
5-D latents (Wan 2.1's VAE), Z-Image 4-D ones (FLUX.1's ae).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server import ComfyServer
from test_workflows import SIZE, assert_background_exact, node_refusal, scene, subject_mask, with_alpha

pytestmark = pytest.mark.newest_only  # the newest ComfyUI detects both families; older ones lack Z-Image

SAMPLING = {"seed": 5, "steps": 3, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "switch": 0.333}
FAMILIES = {"tiny_qwen_image": "tiny_wan21_vae", "tiny_z_image": "tiny_flux1_vae"}
SCENE = {"context_factor": 0.5, "resolution": 128, "feather": 32}
WINDOWED = {"global_max_area": 1.0, "variations": 2}
"""A 128² crop makes the 320x240 scene 4.7 working areas: GCH runs on a window; two results per scene."""


def prompts(unet: str) -> dict[str, Any]:
    """The text encoder and the positive / negative prompts the model takes."""
    if unet == "tiny_qwen_image":
        loader = {"clip_name": "tiny_qwen25_7b.safetensors", "type": "qwen_image"}
        clip = {"class_type": "DreamMixTestTextEncoderLoader", "inputs": loader}
    else:
        clip = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}}
    clip_out = ["clip", 0] if unet == "tiny_qwen_image" else ["clip", 1]
    return {
        "clip": clip,
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a sks backpack", "clip": clip_out}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip_out}},
    }


def inpaint_graph(unet: str, image: str, prefix: str, **settings: Any) -> dict[str, Any]:
    """UNETLoader + VAELoader + the family's prompts into DreamMix Inpaint, saved."""
    return prompts(unet) | {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": f"{unet}.safetensors", "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": f"{FAMILIES[unet]}.safetensors"}},
        "img": {"class_type": "LoadImage", "inputs": {"image": image}},
        "result": {
            "class_type": "DreamMixInpaint",
            "inputs": {
                "model": ["unet", 0],
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "vae": ["vae", 0],
                "image": ["img", 0],
                "mask": ["img", 1],
                **SAMPLING,
                **SCENE,
                **settings,
            },
        },  # fmt: skip
        "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["result", 0]}},
    }


def results(server: ComfyServer, graph: dict[str, Any]) -> list[np.ndarray]:
    return server.output_images(server.run(graph), "save")


@pytest.fixture(scope="module")
def scene_image(comfy_server: ComfyServer, qwen_folder: Path) -> str:
    return comfy_server.upload_image(with_alpha(scene(*SIZE), subject_mask(*SIZE)), "dreammix_qwen_scene.png")


def available(qwen_folder: Path, unet: str) -> None:
    if not (qwen_folder / "diffusion_models" / f"{unet}.safetensors").is_file():
        pytest.skip(f"this ComfyUI does not detect {unet} (Z-Image arrived after v0.3.64)")


@pytest.mark.parametrize("unet", FAMILIES)
def test_inpaint_on_a_window_with_variations_keeps_the_background_exact(
    unet: str, comfy_server: ComfyServer, qwen_folder: Path, scene_image: str
) -> None:
    available(qwen_folder, unet)
    first, second = results(comfy_server, inpaint_graph(unet, scene_image, f"window_{unet}", **WINDOWED))
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    assert_background_exact(first, rgb, mask)
    assert_background_exact(second, rgb, mask)
    assert (first[mask] != second[mask]).any()  # two variations, two samples


@pytest.mark.parametrize("unet", FAMILIES)
def test_a_batch_of_scenes_keeps_each_background_and_matches_each_scene_alone(
    unet: str, comfy_server: ComfyServer, qwen_folder: Path, scene_image: str
) -> None:
    """Two scenes (the test scene and its mirror image) with one mask: one result each, exact outside mask and
    feather against its own scene, the second what it gives alone (up to batched rounding). On Qwen-Image the two
    scenes must not become two frames of one video latent (Wan's VAE)."""
    available(qwen_folder, unet)
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    second = comfy_server.upload_image(mirrored, f"dreammix_qwen_scene_mirrored_{unet}.png")
    graph = inpaint_graph(unet, scene_image, f"scenes_{unet}")
    graph["second"] = {"class_type": "LoadImage", "inputs": {"image": second}}
    graph["scenes"] = {"class_type": "ImageBatch", "inputs": {"image1": ["img", 0], "image2": ["second", 0]}}
    graph["result"]["inputs"]["image"] = ["scenes", 0]
    first_result, second_result = results(comfy_server, graph)
    assert_background_exact(first_result, rgb, mask)
    assert_background_exact(second_result, mirrored, mask)
    graph["result"]["inputs"]["image"] = ["second", 0]
    (alone,) = results(comfy_server, graph)
    difference = np.abs(second_result.astype(int) - alone.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_qwen_image_granular_chain_is_the_one_shot_node(
    comfy_server: ComfyServer, qwen_folder: Path, scene_image: str
) -> None:
    """The granular nodes on Qwen-Image's 5-D latents, over a window with two variations, passing only the scene
    record from Local Crop on: the one-shot node's results."""
    available(qwen_folder, "tiny_qwen_image")
    graph = inpaint_graph("tiny_qwen_image", scene_image, "qwen_one_shot", **WINDOWED)
    one_shot = results(comfy_server, graph)
    model = {key: graph["result"]["inputs"][key] for key in ("model", "positive", "negative", "vae")}
    del graph["result"]
    graph |= {
        "crop": {"class_type": "DreamMixLocalCrop", "inputs": {"image": ["img", 0], "mask": ["img", 1], **SCENE}},
        "lcg": {
            "class_type": "DreamMixLocalSampler",
            "inputs": {**model, "local_image": ["crop", 0], "local_mask": ["crop", 1], **SAMPLING, "variations": 2},
        },
        "replace": {
            "class_type": "DreamMixLocalReplace",
            "inputs": {"vae": ["vae", 0], "local_latent": ["lcg", 0], "region": ["crop", 2], "global_max_area": 1.0},
        },
        "gch": {
            "class_type": "DreamMixGlobalSampler",
            "inputs": {**model, "latent": ["replace", 0], "composite": ["replace", 1], **SAMPLING},
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["gch", 0], "vae": ["vae", 0]}},
        "result": {"class_type": "DreamMixComposite", "inputs": {"generated": ["decode", 0], "window": ["replace", 2]}},
    }
    graph["save"]["inputs"]["filename_prefix"] = "qwen_granular"
    granular = results(comfy_server, graph)
    assert len(granular) == len(one_shot) == 2
    for ours, theirs in zip(granular, one_shot):
        np.testing.assert_array_equal(ours, theirs)


def test_qwen_image_edit_reference_latents_keep_the_background_exact(
    comfy_server: ComfyServer, qwen_folder: Path, scene_image: str
) -> None:
    """Qwen-Image-Edit's conditioning: ReferenceLatent adds the VAE-encoded reference (here the scene) to the
    positive prompt, as TextEncodeQwenImageEdit does; both stages take it, the background stays exact, and the
    result differs from the run without it."""
    available(qwen_folder, "tiny_qwen_image")
    plain = inpaint_graph("tiny_qwen_image", scene_image, "qwen_plain")
    graph = inpaint_graph("tiny_qwen_image", scene_image, "qwen_edit")
    graph["reference"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["img", 0], "vae": ["vae", 0]}}
    graph["edit"] = {
        "class_type": "ReferenceLatent",
        "inputs": {"conditioning": ["pos", 0], "latent": ["reference", 0]},
    }
    graph["result"]["inputs"]["positive"] = ["edit", 0]
    (edited,), (unedited,) = results(comfy_server, graph), results(comfy_server, plain)
    mask = subject_mask(*SIZE)
    assert_background_exact(edited, scene(*SIZE), mask)
    assert (edited[mask] != unedited[mask]).any()


def test_clip_l_conditioning_for_qwen_image_is_refused(
    comfy_server: ComfyServer, qwen_folder: Path, scene_image: str
) -> None:
    """Qwen-Image's config leaves its 3584-wide context to the class: read from the DiT, so CLIP-L is named."""
    available(qwen_folder, "tiny_qwen_image")
    graph = inpaint_graph("tiny_qwen_image", scene_image, "qwen_clip_l")
    graph |= {key: value for key, value in prompts("tiny_z_image").items()}
    assert node_refusal(comfy_server, graph, "DreamMixInpaint") == (
        "The positive conditioning is 768 wide but this model takes 3584: encode the prompt with this model's own "
        "text encoder (SD1.5: CLIP-L, SDXL: CLIP-L + bigG, FLUX.1: CLIP-L + T5-XXL, FLUX.2 Klein: Qwen3, Qwen-Image: "
        "Qwen2.5-VL 7B, Z-Image: Qwen3 4B)."
    )
