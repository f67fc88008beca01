"""ComfyUI tier: DreamMix Score runs in a real ComfyUI on tiny random CLIP and DINO models from local folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from server import ExecutionFailed
from test_workflows import node_refusal

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "core"))
from tiny_metric_models import CLIPImageProcessorPil, save_tiny_metric_models  # noqa: E402

# The metric models run under ModelPatcher through the same code as the VLM (nodes/managed_models.py), which
# older checkouts run in the VLM tests of test_attributes.py; the scores themselves are the core's.
pytestmark = pytest.mark.newest_only


def score_graph(clip: str, dino: str, result_colour: int, reference_colour: int) -> dict:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 96, "height": 64, "batch_size": 1, "color": result_colour},
        },
        "2": {
            "class_type": "EmptyImage",
            "inputs": {"width": 48, "height": 48, "batch_size": 2, "color": reference_colour},
        },
        "3": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 96, "height": 64}},
        "4": {
            "class_type": "DreamMixScore",
            "inputs": {
                "image": ["1", 0],
                "mask": ["3", 0],
                "references": ["2", 0],
                "prompt": "a photo of a sks dog",
                "class_word": "dog",
                "clip_model": clip,
                "dino_model": dino,
            },
        },
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 3]}},
    }


@pytest.fixture(scope="module")
def metric_models(comfy_server) -> tuple[str, str]:
    """Tiny CLIP and DINO saved inside the test server's models folder, named as a user types them there."""
    models = comfy_server.layout.base_dir / "models"
    clip, dino = save_tiny_metric_models(models / "metrics")
    return str(clip.relative_to(models)), str(dino.relative_to(models))


def test_score_node_runs_and_identical_images_score_one(comfy_server, metric_models) -> None:
    entry = comfy_server.run(score_graph(*metric_models, 0x336699, 0x336699))
    summary = entry["outputs"]["5"]["text"][0]
    print(summary)
    scores = dict(part.strip().rsplit(" ", 1) for part in summary.split("|"))
    assert float(scores["CLIP-I"]) == pytest.approx(1.0, abs=1e-3)
    assert float(scores["DINO"]) == pytest.approx(1.0, abs=1e-3)
    assert float(scores["CLIP-T"]) == pytest.approx(
        clip_t_by_hand(comfy_server.layout.base_dir / "models" / metric_models[0], 0x336699), abs=6e-4
    )


def clip_t_by_hand(folder: Path, colour: int) -> float:
    """CLIP-T recomputed with transformers alone: the 96x64 image of one colour against 'a photo of a dog'."""
    import torch
    import transformers
    from PIL import Image

    folder = str(folder)
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    image = Image.new("RGB", (96, 64), ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255))
    pixels = CLIPImageProcessorPil.from_pretrained(folder)(images=[image], return_tensors="pt")["pixel_values"]
    tokens = transformers.AutoTokenizer.from_pretrained(folder)(["a photo of a dog"], return_tensors="pt")
    with torch.no_grad():
        image_features, text_features = model.get_image_features(pixels), model.get_text_features(**tokens)
    image_features = getattr(image_features, "pooler_output", image_features)
    text_features = getattr(text_features, "pooler_output", text_features)
    return float(torch.nn.functional.cosine_similarity(image_features, text_features)[0])


def test_score_node_missing_model_folder_is_a_clear_error(comfy_server) -> None:
    with pytest.raises(ExecutionFailed, match="does not exist"):
        comfy_server.run(score_graph("metrics/nope/clip", "metrics/nope/dino", 0, 0))


def test_score_node_reads_no_folder_outside_comfyui(comfy_server, tmp_path) -> None:
    """A model folder outside ComfyUI's models folder is refused, even one that holds a loadable model."""
    clip, dino = save_tiny_metric_models(tmp_path)
    with pytest.raises(ExecutionFailed, match=f"clip_model '{clip}' is outside"):
        comfy_server.run(score_graph(str(clip), str(dino), 0, 0))


def with_three_masks(graph: dict) -> dict:
    """Two result images and a batch of three masks (the red channel of three empty images)."""
    graph["1"]["inputs"]["batch_size"] = 2
    graph["6"] = {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 64, "batch_size": 3, "color": 0}}
    graph["7"] = {"class_type": "ImageToMask", "inputs": {"image": ["6", 0], "channel": "red"}}
    graph["4"]["inputs"]["mask"] = ["7", 0]
    return graph


def with_48x48_mask(graph: dict) -> dict:
    graph["3"]["inputs"] |= {"width": 48, "height": 48}
    return graph


def without(name: str):
    def change(graph: dict) -> dict:
        graph["4"]["inputs"][name] = "  "
        return graph

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (with_three_masks, "2 images but 3 masks: give one mask for all, or one per image."),
        (with_48x48_mask, "The mask is 48x48 but the image is 96x64: give the mask the image was inpainted with."),
        (without("clip_model"), "Give clip_model as a local folder or a Hugging Face id."),
        (without("dino_model"), "Give dino_model as a local folder or a Hugging Face id."),
    ],
    ids=["three-masks-for-two-images", "mask-of-another-size", "no-clip-model", "no-dino-model"],
)
def test_score_node_refuses_before_loading_a_model(comfy_server, change, message) -> None:
    """Masks that do not fit the images, or a model left empty: refused before any model loads (none is there)."""
    graph = change(score_graph("metrics/none/clip", "metrics/none/dino", 0, 0))
    assert node_refusal(comfy_server, graph, "DreamMixScore") == message
