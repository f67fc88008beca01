"""The Qwen-Image and Z-Image workflows: train a subject LoRA and inpaint with it, then inpaint with a trained LoRA.

test_workflows.py checks that each UI workflow loads and matches its API twin, as for every shipped workflow. Here
the static tests check the released models' file names and sampling settings and that every model, text and VAE
input comes from the family's loaders; the run tests queue the training twins on the tiny random DiTs
(make_qwen_models.py), loaded by the workflows' own Load Diffusion Model and Load VAE, shrunk as the SD training
workflow's test shrinks them, and run the inpaint twins through the batch command with the LoRA just trained. Load
CLIP builds only full-size encoders, so Qwen-Image's prompts go through the one-layer Qwen2.5-VL of the test-only
DreamMixTestTextEncoderLoader and Z-Image's through the tiny SD1.5 checkpoint's CLIP-L (the tiny Z-Image reads a
768-wide context).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from server import ComfyServer
from test_batch import make_cases, run_batch
from test_training import QWEN_LAYERS
from test_training_workflow import lora_path, shrunk_training_graph
from test_workflows import (
    SIZE,
    api_without_meta,
    assert_background_exact,
    id_of,
    load_api,
    saved_image,
    scene,
    subject_mask,
)

RELEASED = {
    "qwen_image": {
        "UNETLoader": {"unet_name": "qwen_image_fp8_e4m3fn.safetensors", "weight_dtype": "default"},
        "CLIPLoader": {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors", "type": "qwen_image", "device": "default"},
        "VAELoader": {"vae_name": "qwen_image_vae.safetensors"},
    },
    "z_image": {
        "UNETLoader": {"unet_name": "z_image_turbo_bf16.safetensors", "weight_dtype": "default"},
        "CLIPLoader": {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2", "device": "default"},
        "VAELoader": {"vae_name": "ae.safetensors"},
    },
}
"""The loaders' settings, as ComfyUI's repackaged releases (Comfy-Org/Qwen-Image_ComfyUI, z_image_turbo) name them."""
SAMPLING = {"qwen_image": (20, 2.5, "euler", "simple"), "z_image": (8, 1.0, "euler", "simple")}
"""(steps, cfg, sampler, scheduler): Qwen-Image's 20 steps at cfg 2.5; Z-Image Turbo's distilled 8 at cfg 1."""
SHIFT = {"qwen_image": 3.1, "z_image": None}
"""ModelSamplingAuraFlow's shift in front of every model input (Qwen-Image's ComfyUI default is 1.15); Z-Image's 3
is ComfyUI's default for it already."""
TINY = {"qwen_image": ("tiny_qwen_image", "tiny_wan21_vae"), "z_image": ("tiny_z_image", "tiny_flux1_vae")}
FAMILY = {"qwen_image": "Qwen-Image", "z_image": "Z-Image"}
KINDS = ("train_subject", "inpaint")


def name_of(family: str, kind: str) -> str:
    return f"dreammix_{family}_{kind}"


def model_source(graph: dict[str, Any], family: str) -> str:
    """The node every model input starts from: ModelSamplingAuraFlow on the loaded model, or the loader itself."""
    unet = id_of(graph, "UNETLoader")
    if SHIFT[family] is None:
        return unet
    sampling = id_of(graph, "ModelSamplingAuraFlow")
    assert graph[sampling]["inputs"] == {"shift": SHIFT[family], "model": [unet, 0]}
    return sampling


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family", list(RELEASED))
def test_api_twins_take_the_released_models_and_their_settings(family: str, kind: str) -> None:
    """The three core loaders with the released files feed every model, text and VAE input; the inpaint takes the
    trained model (training workflow) or the saved LoRA on the loaded model (inpaint workflow); regular data and
    the inpaint sample with the family's settings."""
    graph = api_without_meta(name_of(family, kind))
    for loader, inputs in RELEASED[family].items():
        assert graph[id_of(graph, loader)]["inputs"] == inputs
    assert "CheckpointLoaderSimple" not in {node["class_type"] for node in graph.values()}
    source, clip, vae = model_source(graph, family), id_of(graph, "CLIPLoader"), id_of(graph, "VAELoader")
    inpaint = graph[id_of(graph, "DreamMixInpaint")]["inputs"]
    samplers = [inpaint]
    if kind == "train_subject":
        regular, train = id_of(graph, "DreamMixRegularData"), id_of(graph, "DreamMixTrainSubjectLoRA")
        for node in (regular, train):
            wired = {key: graph[node]["inputs"][key] for key in ("model", "clip", "vae")}
            assert wired == {"model": [source, 0], "clip": [clip, 0], "vae": [vae, 0]}
        assert inpaint["model"] == [train, 0]
        assert graph[train]["inputs"]["gradient_checkpointing"] is True
        samplers.append(graph[regular]["inputs"])
    else:
        lora = id_of(graph, "LoraLoaderModelOnly")
        assert graph[lora]["inputs"]["model"] == [source, 0] and inpaint["model"] == [lora, 0]
    assert inpaint["vae"] == [vae, 0]
    for prompt in ("positive", "negative"):
        assert graph[inpaint[prompt][0]]["inputs"]["clip"] == [clip, 0]
    for inputs in samplers:
        assert (inputs["steps"], inputs["cfg"], inputs["sampler_name"], inputs["scheduler"]) == SAMPLING[family]


def on_tiny_models(graph: dict[str, Any], family: str) -> None:
    """The twin's loaders on the tiny files: its Load CLIP becomes the test text-encoder loader (Qwen-Image) or the
    tiny SD1.5 checkpoint (Z-Image: its CLIP-L is output 1)."""
    unet, vae = TINY[family]
    graph[id_of(graph, "UNETLoader")]["inputs"]["unet_name"] = f"{unet}.safetensors"
    graph[id_of(graph, "VAELoader")]["inputs"]["vae_name"] = f"{vae}.safetensors"
    clip = id_of(graph, "CLIPLoader")
    if family == "qwen_image":
        loader = {"clip_name": "tiny_qwen25_7b.safetensors", "type": "qwen_image"}
        graph[clip] = {"class_type": "DreamMixTestTextEncoderLoader", "inputs": loader}
        return
    graph[clip] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}}
    for node in graph.values():
        for name, value in node["inputs"].items():
            if value == [clip, 0]:
                node["inputs"][name] = [clip, 1]


def training_graph(server: ComfyServer, family: str) -> dict[str, Any]:
    """The training twin on the tiny models, shrunk, with its own photos, scene, LoRA name and output prefix."""
    tag = f"train-{family}"
    graph = copy.deepcopy(load_api(name_of(family, "train_subject")))
    on_tiny_models(graph, family)
    graph[id_of(graph, "DreamMixRegularData")]["inputs"]["dataset_folder"] = f"dreammix_regular/{tag}"
    return shrunk_training_graph(server, graph, tag)


@pytest.fixture(scope="module")
def trained(comfy_server: ComfyServer, qwen_folder: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """family → (graph, /history entry) of its training workflow, run once."""
    runs = {}
    for family in RELEASED:
        graph = training_graph(comfy_server, family)
        runs[family] = graph, comfy_server.run(graph)
    return runs


@pytest.mark.newest_only  # the newest ComfyUI detects both families; older ones lack Z-Image
@pytest.mark.parametrize("family", list(RELEASED))
def test_training_workflow_trains_the_family_and_inpaints_with_it(
    comfy_server: ComfyServer, trained: dict, family: str
) -> None:
    """Every node executes on the tiny DiT; the LoRA holds the recipe's layers of that DiT and records its family;
    the inpaint with the trained model keeps the background exact."""
    graph, entry = trained[family]
    assert_background_exact(saved_image(comfy_server, entry, graph), scene(*SIZE), subject_mask(*SIZE))
    with safe_open(lora_path(comfy_server, f"train-{family}"), "pt") as lora:
        layers = {key.rsplit(".", 2)[0] for key in lora.keys() if key.endswith(".lora_up.weight")}
        assert json.loads(lora.metadata()["dreammix"])["family"] == FAMILY[family]
    assert layers == {f"lora_unet_{layer}" for layer in QWEN_LAYERS[TINY[family][0]]}


@pytest.mark.newest_only
@pytest.mark.parametrize("family", list(RELEASED))
def test_batch_command_runs_the_inpaint_workflow_with_the_trained_lora(
    comfy_server: ComfyServer, trained: dict, family: str, tmp_path: Path
) -> None:
    """`python -m dreammix_batch --workflow <the inpaint twin on the tiny models> --lora <the trained LoRA>` sets the
    workflow's own LoRA loader (no second one inserted), runs a case and writes its image, with the background
    outside mask and feather exactly the case's scene."""
    graph = copy.deepcopy(load_api(name_of(family, "inpaint")))
    on_tiny_models(graph, family)
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(graph))
    cases, out = make_cases(tmp_path / "cases", 1), tmp_path / "out"
    log_before = len(comfy_server.log_text())
    args = ["--out", str(out), "--server", comfy_server.url, "--workflow", str(workflow), "--no-metrics"]
    args += ["--lora", f"train-{family}.safetensors", "--steps", "2", "--resolution", "128", "--timeout", "900"]
    result = run_batch([sys.executable, "-m", "dreammix_batch", str(cases), *args])
    assert "ran 1 case(s): case0" in result.stdout
    assert "lora key not loaded" not in comfy_server.log_text()[log_before:]
    image = np.array(Image.open(out / "images" / "case0" / "seed0.png").convert("RGB"))
    rgb = np.array(Image.open(cases / "case0" / "scene.png").convert("RGB"))
    mask = np.array(Image.open(cases / "case0" / "mask.png")) > 127
    assert_background_exact(image, rgb, mask)
