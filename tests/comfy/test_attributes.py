"""ComfyUI tier: TAS on real ComfyUI text encoders (SD1.5, SDXL, FLUX.1, FLUX.2 Klein) and the attribute nodes
through the server."""

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


def run_tas_probe(install: ComfyInstall, source: Path | str, tmp_path: Path) -> dict:
    """`source`: a checkpoint, or 'sdxl' / 'flux1' / 'klein' / 'z_image' for those text encoders built in the probe."""
    return run_probe(install, PROBE, "TAS_PROBE", [str(source)], tmp_path)


def check_tas(report: dict, encoders: list[str], slices: list[str], rows: int) -> None:
    """The measures the issue states, on any family: every content token orthogonal to the attribute span in each
    slice (it was not before), the pooled vector too, start/end/padding/template tokens bit for bit, strength 0 =
    the plain encode, the attribute positions the Hugging Face tokenizer gives."""
    print("TAS", json.dumps(report))
    assert report["encoders"] == encoders
    assert report["slices"] == slices  # the widths of the tiny encoders built in the probe, checked by hand
    assert all(value < 1e-5 for value in report["max_cos_tokens"].values())
    assert all(value > 1e-2 for value in report["max_cos_tokens_before"].values())
    assert report["max_cos_pooled"] is None or report["max_cos_pooled"] < 1e-5
    assert report["plain_equals_clip_text_encode"]
    assert report["non_content_untouched"]
    assert report["content_changed"]
    assert report["strength0_identical"]
    assert report["positions_found"] == report["positions_expected"]
    assert all(count == rows for count in report["direction_rows"].values())


def check_probe(report: dict, encoders: list[str], slices: list[str]) -> None:
    check_tas(report, encoders, slices, 6)  # light+blue, polka+-+dotted, nylon
    assert report["prompt_tokens"] > 77  # the long prompt really spans two chunks
    assert report["max_cos_pooled"] is not None
    assert report["long_attributes"].startswith("DreamMixInputError: The attribute text")
    assert "more than the text encoder's one chunk (75 tokens)" in report["long_attributes"]
    assert report["refusals"] == {
        "no_clip": "DreamMixInputError: No CLIP is connected: a checkpoint without a text encoder cannot be used "
        "for TAS.",
        "sd3_text_encoders": "DreamMixInputError: TAS supports the text encoders of SD1.5, SD2, SDXL, FLUX.1 "
        "(CLIP-L + T5-XXL), FLUX.2 Klein and Z-Image (Qwen3) and Qwen-Image (Qwen2.5-VL); this CLIP has encoders "
        "['g', 'l', 't5xxl'] with embedding width 4096.",
        "vlm_folder_removed": "DreamMixInputError: The VLM folder 'removed_vlm' is no longer in models/vlm: refresh "
        "the node.",
        "image_of_no_image_shape": "DreamMixInputError: Unexpected image shape (8,).",
    }
    assert report["removed_vlm_was_listed"]


def test_tas_on_sd15_clip(comfy_install, checkpoints, tmp_path) -> None:
    check_probe(run_tas_probe(comfy_install, checkpoints.path("tiny_sd15"), tmp_path), ["l"], ["l[0:768]"])


def test_tas_on_sdxl_clips(comfy_install, tmp_path) -> None:
    """SDXL's CLIP-L and bigG at their real widths, each slice in its own space (ComfyUI's classes, three layers
    each, built in the probe: reading the tiny SDXL checkpoint's full-size encoders took most of this test's time).
    The family-independent refusals are checked on SD1.5."""
    report = run_tas_probe(comfy_install, "sdxl", tmp_path)
    check_tas(report, ["g", "l"], ["l[0:768]", "g[768:2048]"], 6)
    assert report["prompt_tokens"] > 77 and report["max_cos_pooled"] is not None


def test_tas_on_flux1_t5(comfy_install, tmp_path) -> None:
    """FLUX.1: the embedding is T5-XXL's (real tokenizer: per-word SentencePiece, end token, padding to 256), the
    pooled vector CLIP-L's. T5 light+blue, polka+-+dotted (5 pieces), nylon: 8 rows."""
    report = run_tas_probe(comfy_install, "flux1", tmp_path)
    check_tas(report, ["t5xxl"], ["t5xxl[0:64]"], 8)
    assert report["prompt_tokens"] == 256 and report["max_cos_pooled"] is not None


def test_tas_on_flux2_klein_qwen3(comfy_install, tmp_path) -> None:
    """FLUX.2 Klein: the embedding is Qwen3's layers 9, 18 and 27 side by side, each slice its own space; the
    prompt sits in a chat template whose tokens TAS must leave alone; no pooled vector."""
    if "def klein_te" not in (comfy_install.path / "comfy" / "text_encoders" / "flux.py").read_text():
        pytest.skip("this ComfyUI has no FLUX.2 Klein text encoder (it came after v0.3.64)")
    report = run_tas_probe(comfy_install, "klein", tmp_path)
    check_tas(report, ["qwen3_4b"], ["qwen3_4b[0:32]", "qwen3_4b[32:64]", "qwen3_4b[64:96]"], 7)
    assert report["prompt_tokens"] == 512 and report["max_cos_pooled"] is None


@pytest.mark.newest_only  # Z-Image's text encoder came after v0.3.64
def test_tas_on_z_image_qwen3(comfy_install, tmp_path) -> None:
    """Z-Image: the embedding is Qwen3's penultimate layer alone (one slice), the prompt in Z-Image's own chat template
    (user turn, then the assistant's opening), unpadded; no pooled vector. Qwen3 light+blue, polka+-+dotted, nylon
    with their leading spaces: 7 rows, as for Klein's Qwen3."""
    report = run_tas_probe(comfy_install, "z_image", tmp_path)
    check_tas(report, ["qwen3_4b"], ["qwen3_4b[0:32]"], 7)
    assert report["max_cos_pooled"] is None
    # the template's tokens by hand: <|im_start|> user \n before; <|im_end|> \n <|im_start|> assistant \n after
    assert report["prompt_tokens"] == report["content_tokens"] + 3 + 5


def test_tas_on_qwen_image_qwen25_vl(comfy_install, tmp_path) -> None:
    """Qwen-Image: the embedding is Qwen2.5-VL's last layer (one slice), and ComfyUI's encoder leaves the chat
    template's head (the system turn and the user turn's opening) out of it: TAS reads the embedding as the tokens'
    tail, which the probe counts on its own with the Hugging Face tokenizer. Qwen2.5's tokens of light+blue,
    polka+-+dotted, nylon with their leading spaces: 7 rows."""
    report = run_tas_probe(comfy_install, "qwen_image", tmp_path)
    check_tas(report, ["qwen25_7b"], ["qwen25_7b[0:32]"], 7)
    assert report["max_cos_pooled"] is None
    assert report["dropped_tokens"] == report["template_head_tokens"] > 0
    # what is left of the template by hand: <|im_end|> \n <|im_start|> assistant \n after the prompt
    assert report["prompt_tokens"] == report["content_tokens"] + 5


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
