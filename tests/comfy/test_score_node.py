"""ComfyUI tier: DreamMix Score runs in a real ComfyUI on tiny random CLIP and DINO models from local folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from server import ExecutionFailed

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "core"))
from tiny_metric_models import save_tiny_metric_models  # noqa: E402


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
    assert -1.0 <= float(scores["CLIP-T"]) <= 1.0


def test_score_node_missing_model_folder_is_a_clear_error(comfy_server) -> None:
    with pytest.raises(ExecutionFailed, match="does not exist"):
        comfy_server.run(score_graph("metrics/nope/clip", "metrics/nope/dino", 0, 0))


def test_score_node_reads_no_folder_outside_comfyui(comfy_server, tmp_path) -> None:
    """A model folder outside ComfyUI's models folder is refused, even one that holds a loadable model."""
    clip, dino = save_tiny_metric_models(tmp_path)
    with pytest.raises(ExecutionFailed, match=f"clip_model '{clip}' is outside"):
        comfy_server.run(score_graph(str(clip), str(dino), 0, 0))
