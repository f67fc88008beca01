"""The batch command (`python -m dreammix_batch`) against real ComfyUI servers on tiny_sd15.

The command runs as users run it, in a subprocess of the pytest python (which has torch and
transformers for the metrics); the metrics come from tiny random-weight CLIP and DINO models saved
to local folders, so the results table is filled without any download. Runs are small: 256x192
scenes, 4 steps, working resolution 256.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from server import ComfyServer

PACK_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PACK_ROOT / "tests" / "core"))
from tiny_metric_models import save_tiny_metric_models  # noqa: E402

# The runner's own code (sharing among servers, resuming) is the same on every ComfyUI; older checkouts run it
# through the quick start (tests/comfy/test_quick_start.py), and its sharing among servers is a core test.
pytestmark = pytest.mark.newest_only

SIZE = (256, 192)
CKPT = "tiny_sd15.safetensors"
PROMPTS = ("a photo of a sks dog on the grass", "a photo of a red sks dog on the beach", "a sks dog", "a sks dog")


def make_cases(root: Path, count: int) -> Path:
    """`count` cases of a 256x192 scene (a gradient with noise) and a box mask in a different place each."""
    rng = np.random.default_rng(0)
    width, height = SIZE
    for index in range(count):
        folder = root / f"case{index}"
        folder.mkdir(parents=True)
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        scene = np.clip(ramp * [0.3, 0.8, 0.4] + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(scene).save(folder / "scene.png")
        mask = np.zeros((height, width), np.uint8)
        left = 30 + 40 * index
        mask[50:150, left : left + 90] = 255
        Image.fromarray(mask).save(folder / "mask.png")
        (folder / "prompt.txt").write_text(PROMPTS[index % len(PROMPTS)] + "\n")
    return root


@pytest.fixture(scope="module")
def tiny_metrics(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_metric_models(tmp_path_factory.mktemp("metric_models"))


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("references")
    rng = np.random.default_rng(1)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(folder / f"ref{index}.png")
    return folder


def command(cases: Path, out: Path, servers: list[str], tiny_metrics, references: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "dreammix_batch", str(cases), "--out", str(out)]
    for url in servers:
        args += ["--server", url]
    args += ["--ckpt", CKPT, "--steps", "4", "--resolution", "256", "--references", str(references)]
    args += ["--class-word", "dog", "--clip-model", str(tiny_metrics[0]), "--dino-model", str(tiny_metrics[1])]
    args += ["--device", "cpu", "--timeout", "600", *extra]
    return args


def run_batch(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PACK_ROOT)}
    result = subprocess.run(args, cwd=PACK_ROOT, capture_output=True, text=True, timeout=1500, env=env)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-5000:]}"
    return result


def results(out: Path) -> list[list[str]]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.reader(handle))


def assert_filled_table(out: Path, names: list[str]) -> None:
    rows = results(out)
    assert rows[0] == ["case", "images", "CLIP-T", "CLIP-I", "DINO"]
    assert [row[0] for row in rows[1:]] == [*names, "mean"]
    cases = [[float(value) for value in row[2:]] for row in rows[1:-1]]
    means = [float(value) for value in rows[-1][2:]]
    assert means == pytest.approx([sum(column) / len(column) for column in zip(*cases)], abs=1e-3), rows


def test_end_to_end_resuming_after_a_limit_and_after_a_kill(
    comfy_server: ComfyServer, tiny_metrics, references, tmp_path, capsys
) -> None:
    cases, out = make_cases(tmp_path / "cases", 2), tmp_path / "out"
    args = command(cases, out, [comfy_server.url], tiny_metrics, references)
    first = run_batch([*args, "--limit", "1"])
    assert "ran 1 case(s): case0" in first.stdout
    done = out / "images" / "case0" / "seed0.png"
    stamp = done.stat().st_mtime_ns
    assert not (out / "images" / "case1").exists()
    assert results(out)[2][1:] == ["0", "", "", ""]  # case1 not run yet: no image, empty metrics

    # Killed hard while case1 runs on the server (its scene uploaded, its prompt queued), then the
    # orphaned prompt is interrupted as a user would, so the rerun does not wait behind it.
    uploaded = comfy_server.layout.input_dir / "dreammix_batch_case1.png"
    uploaded.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(PACK_ROOT)}
    process = subprocess.Popen(
        args, cwd=PACK_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not uploaded.exists() and time.monotonic() < deadline:
        assert process.poll() is None, "the batch ended before it could be killed"
        time.sleep(0.1)
    comfy_server.wait_for_running_prompt()  # queued right after the upload
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    comfy_server.interrupt()
    assert not (out / "images" / "case1" / "seed0.png").exists(), "too late: the kill found nothing left to do"

    rerun = run_batch(args)
    assert "skipped 1 finished case(s): case0" in rerun.stdout
    assert "ran 1 case(s): case1" in rerun.stdout
    assert done.stat().st_mtime_ns == stamp, "a finished image was generated again"
    assert not list(out.rglob("*.part"))
    for case in ("case0", "case1"):
        with Image.open(cases / case / "scene.png") as scene, Image.open(out / "images" / case / "seed0.png") as image:
            assert image.size == SIZE
            assert np.array_equal(np.asarray(image)[:16], np.asarray(scene)[:16])  # beyond mask + feather: exact
    assert_filled_table(out, ["case0", "case1"])
    assert "| **mean** | 2 |" in (out / "results.md").read_text()
    with capsys.disabled():
        print(f"\n--- results of the resumed run (tiny_sd15, tiny random CLIP/DINO) ---\n{rerun.stdout}")
