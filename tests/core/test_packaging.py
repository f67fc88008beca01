"""What ships: the example case the quick start runs, and the wheel a plain `pip install .` installs."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PACK_ROOT = Path(__file__).resolve().parents[2]
CASES = PACK_ROOT / "example_cases"


def test_example_case_is_what_make_cases_draws(tmp_path: Path) -> None:
    """The shipped case is the script's output, so the two never drift apart."""
    runpy.run_path(str(CASES / "make_cases.py"), run_name="make_cases")["write_case"](tmp_path)
    for name in ("scene.png", "mask.png"):
        with Image.open(CASES / "park_bench" / name) as shipped, Image.open(tmp_path / "park_bench" / name) as drawn:
            np.testing.assert_array_equal(np.asarray(shipped), np.asarray(drawn))
    assert (CASES / "park_bench" / "prompt.txt").read_text() == (tmp_path / "park_bench" / "prompt.txt").read_text()


def test_wheel_ships_the_batch_command_with_its_default_workflow(tmp_path: Path) -> None:
    """A non-editable install: the console script's target and its default workflow come from the wheel alone."""
    source = tmp_path / "source"  # a clean copy: a stale build/ folder in the tree would hide a missing file
    shutil.copytree(PACK_ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("comfyui_dreammix-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "dreammix-batch = dreammix_batch.cli:main" in (tmp_path / "site" / entry_points).read_text()
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "nodes/"))]
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import dreammix_batch.workflow as w; "
        "print(w.__file__); print(w.DEFAULT_WORKFLOW); w.load_workflow(w.DEFAULT_WORKFLOW)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    module, workflow = result.stdout.split()
    assert module.startswith(str(tmp_path / "site")) and workflow.startswith(str(tmp_path / "site"))
