"""The attribute-edit workflow: typed (or VLM) attributes → edit prompt → TAS → DreamMix Inpaint.

test_workflows.py checks that the UI workflow loads and matches its API twin, as for every shipped
workflow; static tests here check its wiring: two STRING outputs feed STRING widget inputs, which
the frontend stores as linked inputs that keep their widget value. Run tests
queue the API twin on the tiny checkpoints with a non-square scene whose alpha is the mask.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from server import ComfyServer
from test_workflows import (
    PACK_MODULE,
    SIZE,
    api_without_meta,
    assert_background_exact,
    cached_nodes,
    failure,
    id_of,
    load_ui,
    prepared_graph,
    saved_image,
    scene,
    subject_mask,
    with_alpha,
)
from workflow_format import ObjectInfo, outputs_reached, widget_problems

# Graph-level: the TAS and VLM nodes wired as the workflow ships them. What differs between ComfyUI versions
# (CLIP tokenisation and encoding, ModelPatcher) older checkouts run through tas_probe (test_attributes.py).
pytestmark = pytest.mark.newest_only

NAME = "dreammix_attribute_edit"
ATTRIBUTE_CATEGORY = "DreamMix/attributes"
NO_VLM = "none (type the attributes)"
SUBJECT_SIZE = (96, 64)


@pytest.fixture(scope="module")
def object_info(comfy_server: ComfyServer) -> ObjectInfo:
    return comfy_server.object_info()


# --- static: what the workflow wires (test_workflows.py checks it loads and matches its twin) ---


def test_string_outputs_feed_linked_widget_inputs() -> None:
    """A STRING linked into a widget input is an input entry naming its widget, with the link; no extra slot."""
    workflow = load_ui(NAME)
    tas = next(node for node in workflow["nodes"] if node["type"] == "DreamMixTAS")
    linked = {entry["name"]: entry for entry in tas["inputs"] if entry.get("link") is not None}
    for name in ("prompt", "original_attributes"):
        assert linked[name]["widget"] == {"name": name} and linked[name]["type"] == "STRING"
    assert len(tas["widgets_values"]) == 4


def test_checks_catch_a_linked_widget_without_its_value(object_info: ObjectInfo) -> None:
    """Dropping a linked widget's value (a hand-edit mistake) shifts every later widget: the checks see it."""
    workflow = load_ui(NAME)
    tas = next(node for node in workflow["nodes"] if node["type"] == "DreamMixTAS")
    del tas["widgets_values"][0]
    assert widget_problems(tas, object_info["DreamMixTAS"])


def test_api_twin_wires_tas_into_both_stages(object_info: ObjectInfo) -> None:
    """plain → positive (GCH), decomposed → local_positive (LCG); the typed attributes run without a VLM."""
    graph = api_without_meta(NAME)
    refine, edit, tas, inpaint = (
        id_of(graph, kind)
        for kind in ("DreamMixAttributeRefine", "DreamMixEditPrompt", "DreamMixTAS", "DreamMixInpaint")
    )
    assert graph[refine]["inputs"]["typed_attributes"] == "blue"
    assert graph[refine]["inputs"]["vlm"] == NO_VLM and graph[refine]["inputs"]["vlm_hub_id"] == ""
    assert graph[edit]["inputs"] == {"class_word": "backpack", "edit": "red", "scene": "on the grass"}
    assert graph[tas]["inputs"]["prompt"] == [edit, 0]
    assert graph[tas]["inputs"]["original_attributes"] == [refine, 0]
    assert graph[tas]["inputs"]["attribute_template"] == "a photo of a sks {attributes}"
    assert graph[tas]["inputs"]["strength"] == 1.0
    assert graph[inpaint]["inputs"]["positive"] == [tas, 1]
    assert graph[inpaint]["inputs"]["local_positive"] == [tas, 0]
    negative = graph[graph[inpaint]["inputs"]["negative"][0]]
    assert negative == {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "", "clip": [id_of(graph, "CheckpointLoaderSimple"), 1]},
    }
    assert outputs_reached(graph, object_info) == set(graph), "a node no output depends on"
    pack_attribute_nodes = {
        name
        for name, info in object_info.items()
        if info["python_module"] == PACK_MODULE and info["category"] == ATTRIBUTE_CATEGORY
    }
    assert pack_attribute_nodes <= {node["class_type"] for node in graph.values()}


# --- running the API twin --------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeRun:
    graph: dict[str, Any]
    entry: dict[str, Any]
    image: np.ndarray


def attribute_graph(server: ComfyServer, ckpt: str, tag: str) -> dict[str, Any]:
    """The API twin on a test checkpoint: the scene (alpha = mask) and a small subject photo, uploaded as `tag`."""
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    image = server.upload_image(with_alpha(rgb, mask), f"{tag}-scene.png")
    graph = prepared_graph(NAME, ckpt, image, tag)
    subject = graph[id_of(graph, "DreamMixAttributeRefine")]["inputs"]["subject_images"][0]
    graph[subject]["inputs"]["image"] = server.upload_image(scene(*SUBJECT_SIZE), f"{tag}-subject.png")
    return graph


def run(server: ComfyServer, graph: dict[str, Any]) -> AttributeRun:
    entry = server.run(graph)
    return AttributeRun(graph, entry, saved_image(server, entry, graph))


def check_run(result: AttributeRun, object_info: ObjectInfo) -> None:
    """Input size, exact background, and every pack node that reads the images or the model really executed.

    Nodes whose inputs are all constants (the edit prompt) may be served from an earlier run's cache.
    """
    assert_background_exact(result.image, scene(*SIZE), subject_mask(*SIZE))
    pack_ids = {
        nid for nid, node in result.graph.items() if object_info[node["class_type"]]["python_module"] == PACK_MODULE
    }
    fed = {nid for nid in pack_ids if any(isinstance(v, list) for v in result.graph[nid]["inputs"].values())}
    assert {"DreamMixAttributeRefine", "DreamMixTAS", "DreamMixInpaint"} <= {
        result.graph[nid]["class_type"] for nid in fed
    }
    assert not fed & cached_nodes(result.entry), "a pack node was served from the cache, not executed"


@pytest.fixture(scope="module")
def sd15_run(comfy_server: ComfyServer) -> AttributeRun:
    return run(comfy_server, attribute_graph(comfy_server, "tiny_sd15", "attribute-tiny_sd15"))


def test_attribute_workflow_keeps_background_exact(sd15_run: AttributeRun, object_info: ObjectInfo) -> None:
    check_run(sd15_run, object_info)


def test_decomposed_prompt_reaches_local_generation(comfy_server: ComfyServer, sd15_run: AttributeRun) -> None:
    """Without local_positive LCG sees the plain prompt: the subject differs, the background does not."""
    graph = copy.deepcopy(sd15_run.graph)
    del graph[id_of(graph, "DreamMixInpaint")]["inputs"]["local_positive"]
    for node in graph.values():
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = "attribute-plain-only"
    plain_only = run(comfy_server, graph).image
    mask = subject_mask(*SIZE)
    assert_background_exact(plain_only, scene(*SIZE), mask)
    assert (plain_only[mask] != sd15_run.image[mask]).any(), "local_positive made no difference"


def test_empty_attributes_without_vlm_is_a_clear_error(comfy_server: ComfyServer) -> None:
    graph = attribute_graph(comfy_server, "tiny_sd15", "attribute-empty")
    graph[id_of(graph, "DreamMixAttributeRefine")]["inputs"]["typed_attributes"] = ""
    error = failure(comfy_server, graph)
    assert error.node_type == "DreamMixAttributeRefine"
    assert "Type the subject's attributes" in error.exception_message
