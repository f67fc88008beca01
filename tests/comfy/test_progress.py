"""ComfyUI tier: DreamMix Inpaint reports progress with previews in both stages; Cancel stops each stage and
Local Crop's pre-fill."""

from __future__ import annotations

from pathlib import Path

from probe import run_probe

PROBE = Path(__file__).with_name("progress_probe.py")


def test_progress_previews_and_cancel_in_each_stage(comfy_install, checkpoints, tmp_path) -> None:
    checkpoint = str(checkpoints.path("tiny_sd15"))
    report = run_probe(comfy_install, PROBE, "PROGRESS_PROBE", [checkpoint], tmp_path)
    sampling = [(value, total) for value, total, preview in report["updates"] if preview]
    assert sampling == [(1, 3), (2, 3), (3, 3), (1, 3), (2, 3), (3, 3)]  # LCG 3 steps, then GCH 3 steps
    # Cancel in LCG stops at LCG's 2nd update, in GCH at GCH's 2nd: each stage stops where it was cancelled
    assert report["stopped_after"] == {"local": 2, "global": len(report["updates"]) // 2 + 2}
    assert report["crop_cancelled"], "Local Crop's pre-fill did not stop on Cancel"
