"""Run an in-process probe script under ComfyUI's python and read back its one JSON report line.

Probes (tas_probe.py, progress_probe.py, training_probe.py) import ComfyUI as a library where a test
needs what the HTTP API does not show (tensors, progress hooks); they load the pack from a
custom_nodes-style folder and print `<TAG> <json>` as their result.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import PACK_ROOT, ComfyInstall


def run_probe(
    install: ComfyInstall, script: Path, tag: str, args: list[str], folder: Path, timeout: float = 900
) -> dict:
    """Runs `script COMFYUI_PATH PACK_DIR *args` with the pack linked into `folder`; returns its report."""
    pack_dir = folder / "ComfyUI-DreamMix"
    pack_dir.symlink_to(PACK_ROOT)
    result = subprocess.run(
        [install.python, str(script), str(install.path), str(pack_dir), *args],
        cwd=install.path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    prefix = f"{tag} "
    lines = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
    assert result.returncode == 0 and lines, result.stderr[-6000:]
    return json.loads(lines[-1].removeprefix(prefix))
