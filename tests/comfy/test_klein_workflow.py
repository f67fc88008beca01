"""The FLUX.2 Klein training workflow: photos → attribute refinement → regular data → training → inpaint, on Klein.

test_workflows.py checks that the UI workflow loads and matches its API twin, as for every shipped workflow. Here
the static test checks that the three core loaders (Load Diffusion Model, Load CLIP type flux2, Load VAE) feed every
model, text and VAE input, and the run test queues the API twin on the tiny random FLUX.2 model and VAE
(make_flux_models.py), loaded by the workflow's own loaders, shrunk as the SD training workflow's test shrinks it.
Load CLIP only loads a full-size Qwen3, so the tiny SD1.5 checkpoint's CLIP-L stands in (the tiny DiT takes
768-wide conditioning; TAS on Klein's real Qwen3 classes is measured by test_attributes.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from safetensors import safe_open
from server import ComfyServer
from test_flux import available
from test_flux_workflow import on_tiny_models
from test_training_workflow import lora_path, shrunk_training_graph
from test_workflows import (
    SIZE,
    api_without_meta,
    assert_background_exact,
    cached_nodes,
    id_of,
    load_api,
    saved_image,
    scene,
    subject_mask,
)

NAME = "dreammix_flux2_klein_train_subject"
UNET, VAE = "tiny_flux2", "tiny_flux2_vae"
LOADERS = ("UNETLoader", "CLIPLoader", "VAELoader")


def test_api_twin_feeds_every_node_from_the_three_core_loaders() -> None:
    """Regular data, training and the inpaint take the Klein model, its Qwen3 text encoder (type flux2) and the FLUX.2
    VAE; the inpaint takes the trained model; Klein's distilled sampling (4 steps, cfg 1, euler, simple)."""
    graph = api_without_meta(NAME)
    unet, clip, vae = (id_of(graph, kind) for kind in LOADERS)
    assert graph[clip]["inputs"]["type"] == "flux2"
    assert "CheckpointLoaderSimple" not in {node["class_type"] for node in graph.values()}
    regular, train, inpaint = (
        id_of(graph, kind) for kind in ("DreamMixRegularData", "DreamMixTrainSubjectLoRA", "DreamMixInpaint")
    )
    for node in (regular, train):
        assert {key: graph[node]["inputs"][key] for key in ("model", "clip", "vae")} == {
            "model": [unet, 0],
            "clip": [clip, 0],
            "vae": [vae, 0],
        }
    inputs = graph[inpaint]["inputs"]
    assert inputs["model"] == [train, 0] and inputs["vae"] == [vae, 0]
    for prompt in ("positive", "negative"):
        assert graph[inputs[prompt][0]]["inputs"]["clip"] == [clip, 0]
    assert (inputs["steps"], inputs["cfg"], inputs["sampler_name"], inputs["scheduler"]) == (4, 1.0, "euler", "simple")
    data = graph[regular]["inputs"]
    assert (data["steps"], data["cfg"], data["sampler_name"], data["scheduler"]) == (4, 1.0, "euler", "simple")
    assert graph[train]["inputs"]["gradient_checkpointing"] is True


def klein_graph(server: ComfyServer, tag: str) -> dict[str, Any]:
    """The API twin on the tiny FLUX.2 model and VAE, the tiny SD1.5 CLIP-L for Load CLIP, shrunk."""
    graph = copy.deepcopy(load_api(NAME))
    on_tiny_models(graph, UNET, VAE, "CLIPLoader")
    graph[id_of(graph, "DreamMixRegularData")]["inputs"]["dataset_folder"] = f"dreammix_regular/{tag}"
    return shrunk_training_graph(server, graph, tag)


def test_klein_workflow_trains_a_flux_lora_and_inpaints_with_it(comfy_server: ComfyServer, flux_folder: Path) -> None:
    """Every node executes on the tiny Klein model, the LoRA holds kohya FLUX keys of the double and single blocks'
    attention projections (test_training.py loads such files through LoraLoaderModelOnly), and the inpaint with the
    trained model keeps the background exact."""
    available(flux_folder, UNET)
    tag = "train-tiny_flux2"
    graph = klein_graph(comfy_server, tag)
    entry = comfy_server.run(graph)
    assert not {id_of(graph, kind) for kind in ("DreamMixTrainSubjectLoRA", "DreamMixInpaint")} & cached_nodes(entry)
    assert_background_exact(saved_image(comfy_server, entry, graph), scene(*SIZE), subject_mask(*SIZE))
    with safe_open(lora_path(comfy_server, tag), "pt") as lora:
        layers = {key.rsplit(".", 2)[0] for key in lora.keys() if key.endswith(".lora_up.weight")}
        assert json.loads(lora.metadata()["dreammix"])["family"] == "FLUX.2"
    assert layers == {
        f"lora_unet_{block}_0_{layer}"
        for block, layer in [("double_blocks", f"{s}_attn_{p}") for s in ("img", "txt") for p in ("qkv", "proj")]
        + [("single_blocks", "linear1"), ("single_blocks", "linear2")]
    }
