"""ComfyUI tier: DreamMix Inpaint reports progress with previews in both stages; Cancel stops each stage and
Local Crop's pre-fill; each stage's sampler steps through its own slice of ComfyUI's schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
from probe import run_probe

PROBE = Path(__file__).with_name("progress_probe.py")


@pytest.fixture(scope="module")
def report(comfy_install, checkpoints, tmp_path_factory) -> dict:
    checkpoint = str(checkpoints.path("tiny_sd15"))
    return run_probe(comfy_install, PROBE, "PROGRESS_PROBE", [checkpoint], tmp_path_factory.mktemp("progress"))


def test_progress_previews_and_cancel_in_each_stage(report: dict) -> None:
    sampling = [(value, total) for value, total, preview in report["updates"] if preview]
    assert sampling == [(1, 3), (2, 3), (3, 3), (1, 3), (2, 3), (3, 3)]  # LCG 3 steps, then GCH 3 steps
    # Cancel in LCG stops at LCG's 2nd update, in GCH at GCH's 2nd: each stage stops where it was cancelled
    assert report["stopped_after"] == {"local": 2, "global": len(report["updates"]) // 2 + 2}
    assert report["crop_cancelled"], "Local Crop's pre-fill did not stop on Cancel"


def test_the_stages_call_the_model_once_at_each_sigma_of_the_schedule(report: dict) -> None:
    """6 euler steps, switch 0.5: LCG evaluates the model at sigmas 0-2 and stops at sigma 3, where GCH restarts and
    evaluates 3-5 down to the schedule's last sigma (0, never evaluated). Each sigma once for the prompt and once for
    the negative (cfg 4): a stage ending a step early, or GCH restarting at LCG's last sigma, changes this list."""
    schedule = report["schedule"]
    assert len(schedule) == 7 and schedule[-1] == 0.0
    expected = sorted((sigma, entry) for sigma in schedule[:-1] for entry in (0, 1))
    assert [tuple(call) for call in report["model_calls"]] == expected
