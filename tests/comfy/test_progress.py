"""ComfyUI tier: DreamMix Inpaint reports progress with previews in both stages, and Cancel stops it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import PACK_ROOT

PROBE = Path(__file__).with_name("progress_probe.py")


def test_progress_previews_and_cancel_in_both_stages(comfy_install, checkpoints, tmp_path) -> None:
    pack_dir = tmp_path / "ComfyUI-DreamMix"
    pack_dir.symlink_to(PACK_ROOT)
    result = subprocess.run(
        [comfy_install.python, str(PROBE), str(comfy_install.path), str(pack_dir), str(checkpoints.path("tiny_sd15"))],
        cwd=comfy_install.path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROGRESS_PROBE ")]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    report = json.loads(lines[-1].removeprefix("PROGRESS_PROBE "))
    sampling = [(value, total) for value, total, preview in report["updates"] if preview]
    assert sampling == [(1, 3), (2, 3), (3, 3), (1, 3), (2, 3), (3, 3)]  # LCG 3 steps, then GCH 3 steps
    assert report["cancelled"]
    assert report["updates_before_cancel"] < len(report["updates"])
