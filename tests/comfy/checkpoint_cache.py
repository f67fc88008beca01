"""Generate the tiny ComfyUI test checkpoints once and reuse them across test runs.

Generation imports `comfy`, so it runs make_checkpoints.py under the ComfyUI python; that
module imports comfy only inside functions, so its recipe check is usable from pytest.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from make_checkpoints import is_current

MAKE_CHECKPOINTS = Path(__file__).with_name("make_checkpoints.py")
MAKE_FLUX_MODELS = Path(__file__).with_name("make_flux_models.py")
MAKE_QWEN_MODELS = Path(__file__).with_name("make_qwen_models.py")
SD15_CHECKPOINTS = ("tiny_sd15", "tiny_sd15_inpaint")
SDXL_CHECKPOINTS = ("tiny_sdxl", "tiny_sdxl_inpaint")


def default_cache_dir() -> Path:
    """`$DREAMMIX_TEST_CACHE/checkpoints`, else `~/.cache/dreammix-tests/checkpoints`."""
    root = os.environ.get("DREAMMIX_TEST_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "dreammix-tests") / "checkpoints"


@dataclass(frozen=True)
class CheckpointCache:
    """A folder of generated checkpoints, which ComfyUI's `checkpoints` search path points at."""

    directory: Path
    comfyui: Path
    python: str

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.safetensors"

    def ensure(self, *names: str) -> list[str]:
        """Generate whichever of `names` are missing or stale; return their CheckpointLoaderSimple ckpt_name values."""
        missing = [name for name in names if not is_current(self.path(name), name)]
        if missing:
            self._generate(missing)
        return [self.path(name).name for name in names]

    def _generate(self, names: list[str]) -> None:
        result = subprocess.run(
            [self.python, str(MAKE_CHECKPOINTS), "--comfyui", str(self.comfyui), str(self.directory), *names],
            cwd=self.comfyui,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"make_checkpoints.py failed for {names} (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            )


def model_folder(cache_dir: Path, comfyui: Path, script: Path) -> Path:
    """Where `script` (make_flux_models.py, make_qwen_models.py) writes its models for this ComfyUI: keyed by the
    checkout's version and the text of the scripts, so a new recipe or another ComfyUI gets files of its own."""
    import hashlib

    version = (comfyui / "comfyui_version.py").read_text().split('"')[-2]
    recipe = hashlib.sha256(b"".join(path.read_bytes() for path in sorted({script, MAKE_FLUX_MODELS}))).hexdigest()
    return cache_dir.parent / script.stem.removeprefix("make_").removesuffix("_models") / f"{version}-{recipe[:12]}"


def generated_models(cache_dir: Path, comfyui: Path, python: str, script: Path) -> Path:
    """`model_folder`, its models generated once (`diffusion_models/`, `vae/`, `text_encoders/` as the script
    writes them)."""
    folder = model_folder(cache_dir, comfyui, script)
    done = folder / "complete"
    if not done.is_file():
        result = subprocess.run(
            [python, str(script), str(comfyui), str(folder)], cwd=comfyui, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{script.name} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            )
        done.write_text(result.stdout)
    return folder
