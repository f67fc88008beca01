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
