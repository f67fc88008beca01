"""The README's quick start: `dreammix-batch example_cases --comfyui PATH --ckpt NAME`, ComfyUI in process.

The command runs under ComfyUI's python, as a user runs it after installing the pack's requirements
there, on the example case the repository ships (drawn by example_cases/make_cases.py) at half its
size: GCH works on the whole scene, and on CPU the VAE round trip of the full 768x512 scene is most of
the run. ComfyUI's folders are redirected into a temporary layout with the same options the test
servers use, so the checkout under test is left untouched; the tiny SD1.5 checkpoint keeps it to seconds.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import PACK_ROOT, ComfyInstall
from PIL import Image
from server import ServerLayout, redirect_flags
from test_workflows import FEATHER, far_from

CASES = PACK_ROOT / "example_cases"
CASE = CASES / "park_bench"


def quick_start(
    comfy_install: ComfyInstall, layout: ServerLayout, cases: Path, out: Path, *extra: str
) -> subprocess.CompletedProcess:
    command = [comfy_install.python, "-m", "dreammix_batch", str(cases), "--comfyui", str(comfy_install.path)]
    command += ["--ckpt", "tiny_sd15.safetensors", "--out", str(out), "--steps", "2", "--resolution", "256"]
    command += ["--comfyui-args", shlex.join(redirect_flags(layout)), *extra]
    env = {**os.environ, "PYTHONPATH": str(PACK_ROOT)}
    return subprocess.run(command, cwd=PACK_ROOT, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def layout(comfy_install: ComfyInstall, checkpoints, tmp_path_factory: pytest.TempPathFactory) -> ServerLayout:
    layout = ServerLayout(tmp_path_factory.mktemp("quick_start"))
    layout.create(PACK_ROOT, checkpoints.directory)
    return layout


@pytest.fixture(scope="module")
def half_size_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example case at half its size: scene resampled, mask by nearest pixel, the same prompt."""
    cases = tmp_path_factory.mktemp("cases")
    case = cases / CASE.name
    case.mkdir()
    shutil.copy(CASE / "prompt.txt", case / "prompt.txt")
    for name, resample in (("scene.png", Image.Resampling.LANCZOS), ("mask.png", Image.Resampling.NEAREST)):
        with Image.open(CASE / name) as image:
            image.resize((image.width // 2, image.height // 2), resample).save(case / name)
    return cases


def test_quick_start_runs_comfyui_in_process(
    comfy_install: ComfyInstall, layout: ServerLayout, half_size_cases: Path, tmp_path: Path
) -> None:
    before = sorted(p.name for p in (comfy_install.path / "output").glob("*"))
    result = quick_start(comfy_install, layout, half_size_cases, tmp_path / "out", "--no-metrics")
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-5000:]}"
    image_path = tmp_path / "out" / "images" / "park_bench" / "seed0.png"
    assert f"images: {tmp_path / 'out' / 'images'}" in result.stdout
    assert f"results: {tmp_path / 'out' / 'results.csv'}" in result.stdout
    assert (tmp_path / "out" / "results.md").is_file()
    assert "DreamMix batch" in result.stderr  # the progress bar
    case = half_size_cases / CASE.name
    with Image.open(case / "scene.png") as scene, Image.open(case / "mask.png") as mask, Image.open(image_path) as out:
        scene, mask, out = np.asarray(scene.convert("RGB")), np.asarray(mask) >= 128, np.asarray(out.convert("RGB"))
    assert out.shape == scene.shape
    far = far_from(mask, FEATHER)
    assert np.array_equal(out[far], scene[far]) and not np.array_equal(out[mask], scene[mask])
    assert sorted(p.name for p in (comfy_install.path / "output").glob("*")) == before, "wrote into the checkout"


def test_quick_start_refuses_server_and_comfyui_together(comfy_install: ComfyInstall, layout, tmp_path: Path) -> None:
    result = quick_start(comfy_install, layout, CASES, tmp_path / "out", "--server", "http://127.0.0.1:1")
    assert result.returncode == 2 and "Give --server (running ComfyUI servers) or --comfyui" in result.stderr


def test_quick_start_names_a_folder_that_is_not_comfyui(comfy_install: ComfyInstall, tmp_path: Path) -> None:
    command = [comfy_install.python, "-m", "dreammix_batch", str(CASES), "--comfyui", str(tmp_path)]
    command += ["--out", str(tmp_path / "out"), "--no-metrics"]
    env = {**os.environ, "PYTHONPATH": str(PACK_ROOT)}
    result = subprocess.run(command, cwd=PACK_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1 and f"--comfyui '{tmp_path}' is not a ComfyUI folder" in result.stderr
