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


def flux_models(cache_dir: Path, comfyui: Path, python: str) -> Path:
    """The tiny FLUX diffusion models and VAEs (make_flux_models.py) for this ComfyUI, generated once.

    Returns a folder with `diffusion_models/` and `vae/`. Keyed by the ComfyUI checkout's version and the
    recipe's text, so a new recipe or another ComfyUI (v0.3.64 has no FLUX.2) gets files of its own.
    """
    import hashlib

    version = (comfyui / "comfyui_version.py").read_text().split('"')[-2]
    recipe = hashlib.sha256(MAKE_FLUX_MODELS.read_bytes()).hexdigest()[:12]
    folder = cache_dir.parent / "flux" / f"{version}-{recipe}"
    done = folder / "complete"
    if not done.is_file():
        result = subprocess.run(
            [python, str(MAKE_FLUX_MODELS), str(comfyui), str(folder)], cwd=comfyui, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"make_flux_models.py failed (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            )
        done.write_text(result.stdout)
    return folder
