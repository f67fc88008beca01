"""ComfyUI tier: TAS on real ComfyUI CLIPs (SD1.5 and SDXL) and the attribute nodes through the server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import ComfyInstall
from probe import run_probe
from server import ComfyServer, ExecutionFailed
from test_workflows import node_refusal

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "core"))
from tiny_vlm import tiny_llava, tiny_processor  # noqa: E402

PROBE = Path(__file__).with_name("tas_probe.py")


def run_tas_probe(install: ComfyInstall, checkpoint: Path, tmp_path: Path) -> dict:
    return run_probe(install, PROBE, "TAS_PROBE", [str(checkpoint)], tmp_path)


def check_probe(report: dict, encoders: list[str]) -> None:
    print("TAS", json.dumps(report))
    assert report["encoders"] == encoders
    assert report["prompt_tokens"] > 77  # the long prompt really spans two chunks
    assert all(value < 1e-5 for value in report["max_cos_tokens"].values())
    assert all(value > 1e-2 for value in report["max_cos_tokens_before"].values())
    assert report["max_cos_pooled"] < 1e-5
    assert report["plain_equals_clip_text_encode"]
    assert report["non_content_untouched"]
    assert report["strength0_identical"]
    assert report["positions_found"] == report["positions_expected"]
    assert all(rows == 6 for rows in report["direction_rows"].values())  # light+blue, polka+-+dotted, nylon
    assert report["long_attributes"].startswith("DreamMixInputError: The attribute text")
    assert "more than the text encoder's one chunk (75 tokens)" in report["long_attributes"]
    assert report["refusals"] == {
        "no_clip": "DreamMixInputError: No CLIP is connected: a checkpoint without a text encoder cannot be used "
        "for TAS.",
        "flux_text_encoders": "DreamMixInputError: TAS supports CLIP text encoders of the SD1.5, SD2 and SDXL "
        "families; this CLIP has encoders ['l', 't5xxl'] with embedding width 4096.",
        "vlm_folder_removed": "DreamMixInputError: The VLM folder 'removed_vlm' is no longer in models/vlm: refresh "
        "the node.",
        "image_of_no_image_shape": "DreamMixInputError: Unexpected image shape (8,).",
    }
    assert report["removed_vlm_was_listed"]


def test_tas_on_sd15_clip(comfy_install, checkpoints, tmp_path) -> None:
    check_probe(run_tas_probe(comfy_install, checkpoints.path("tiny_sd15"), tmp_path), ["l"])


def test_tas_on_sdxl_clips(comfy_install, checkpoints, sdxl_checkpoints, tmp_path) -> None:
    check_probe(run_tas_probe(comfy_install, checkpoints.path("tiny_sdxl"), tmp_path), ["g", "l"])


def attribute_graph(typed: str) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0}},
        "2": {
            "class_type": "DreamMixAttributeRefine",
            "inputs": {
                "subject_images": ["1", 0],
                "class_word": "teapot",
                "typed_attributes": typed,
                "vlm": "none (type the attributes)",
                "vlm_hub_id": "",
                "max_new_tokens": 8,
            },
        },
        "3": {"class_type": "DreamMixEditPrompt", "inputs": {"class_word": "teapot", "edit": "glass", "scene": ""}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }


def test_typed_attributes_need_no_model(comfy_server) -> None:
    entry = comfy_server.run(attribute_graph("Clay, glossy, clay"))
    texts = {node: output["text"][0] for node, output in entry["outputs"].items()}
    assert texts["4"] == "a photo of a teapot\na photo of a clay teapot\na photo of a glossy teapot"
    assert texts["5"] == "a photo of a glass sks teapot"


def test_no_attributes_and_no_model_is_a_clear_error(comfy_server) -> None:
    with pytest.raises(ExecutionFailed, match="Type the subject's attributes"):
        comfy_server.run(attribute_graph(" , "))


def tas_graph(original_attributes: str) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "tas": {
            "class_type": "DreamMixTAS",
            "inputs": {
                "clip": ["ckpt", 1],
                "prompt": "a photo of a red sks teapot",
                "original_attributes": original_attributes,
                "attribute_template": "a photo of a sks {attributes}",
                "strength": 1.0,
            },
        },
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["tas", 0]}},
    }


def test_tas_without_original_attributes_is_a_clear_error(comfy_server: ComfyServer) -> None:
    assert node_refusal(comfy_server, tas_graph(" , "), "DreamMixTAS") == (
        "Type at least one original attribute, e.g. 'blue' or 'clay, glossy'."
    )


@pytest.fixture(scope="module")
def silent_vlm(comfy_server: ComfyServer) -> str:
    """The tiny random VLM with its output layer zeroed, in the server's models/vlm: every answer is padding, which
    decodes to nothing."""
    processor = tiny_processor()
    model = tiny_llava(processor.tokenizer)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    folder = comfy_server.layout.base_dir / "models" / "vlm" / "silent_vlm"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder.name


def test_a_vlm_that_names_no_attribute_is_a_clear_error(comfy_server: ComfyServer, silent_vlm: str) -> None:
    graph = attribute_graph(" , ")
    graph["2"]["inputs"]["vlm"] = silent_vlm
    assert node_refusal(comfy_server, graph, "DreamMixAttributeRefine") == (
        "The VLM named no attributes: type them instead, or try another VLM."
    )


def test_vlm_folder_outside_comfyui_is_refused(comfy_server) -> None:
    graph = attribute_graph(" , ")
    graph["2"]["inputs"]["vlm_hub_id"] = "/etc"
    with pytest.raises(ExecutionFailed, match="vlm_hub_id '/etc' is outside"):
        comfy_server.run(graph)
