"""Fixtures for the ComfyUI test tier: a real ComfyUI server with the pack installed.

The tier runs only when COMFYUI_PATH names a ComfyUI checkout; COMFYUI_PYTHON (default:
the interpreter running pytest) is the python that runs ComfyUI.  The pytest process
itself never imports `comfy`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # harness modules, whatever pytest's import mode

from checkpoint_cache import (  # noqa: E402
    MAKE_FLUX_MODELS,
    MAKE_QWEN_MODELS,
    SD15_CHECKPOINTS,
    SDXL_CHECKPOINTS,
    CheckpointCache,
    default_cache_dir,
    generated_models,
    model_folder,
)
from server import ComfyServer, start_server  # noqa: E402

PACK_ROOT = Path(__file__).resolve().parents[2]
SKIP_REASON = "ComfyUI tier skipped: set COMFYUI_PATH to a ComfyUI checkout"


@dataclass(frozen=True)
class ComfyInstall:
    """Where ComfyUI is and which python runs it."""

    path: Path
    python: str


def comfy_install_from_env() -> ComfyInstall | None:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        return None
    return ComfyInstall(Path(path).resolve(), os.environ.get("COMFYUI_PYTHON") or sys.executable)


COMPAT_REASON = "DREAMMIX_TEST_SCOPE=compat: covered on the newest ComfyUI, where nothing about it differs"


def compat_scope() -> bool:
    """An older ComfyUI in a run over several (.ci/run): the tests marked `newest_only` and the SDXL ones are left
    to the newest checkout, whose run covers them; everything that touches what changes between versions runs."""
    return os.environ.get("DREAMMIX_TEST_SCOPE") == "compat"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "newest_only: run on the newest ComfyUI only under DREAMMIX_TEST_SCOPE=compat")


@pytest.hookimpl(tryfirst=True)  # before skipif marks, so the tier reports one reason only
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip every test of the tier from this one line, so pytest -rs groups them into one reason."""
    if comfy_install_from_env() is None:
        pytest.skip(SKIP_REASON)
    if compat_scope() and item.get_closest_marker("newest_only"):
        pytest.skip(COMPAT_REASON)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the skip reason once even without -rs (which would already list it)."""
    reportchars = config.getoption("reportchars") or ""
    skipped = terminalreporter.stats.get("skipped", [])
    if not set("saA") & set(reportchars) and any(SKIP_REASON in str(r.longrepr) for r in skipped):
        terminalreporter.write_line(SKIP_REASON)


@pytest.fixture(scope="session")
def comfy_install() -> ComfyInstall:
    install = comfy_install_from_env()
    assert install is not None  # pytest_runtest_setup skipped the test otherwise
    if not (install.path / "main.py").is_file():
        pytest.fail(f"COMFYUI_PATH={install.path} is not a ComfyUI checkout (no main.py)")
    return install


@pytest.fixture(scope="session")
def checkpoints(comfy_install: ComfyInstall) -> CheckpointCache:
    """The cached tiny checkpoints, SD1.5 pair generated; SDXL ones come from `sdxl_checkpoints`."""
    cache = CheckpointCache(default_cache_dir(), comfy_install.path, comfy_install.python)
    cache.ensure(*SD15_CHECKPOINTS)
    return cache


@pytest.fixture(scope="session")
def sdxl_checkpoints(checkpoints: CheckpointCache) -> list[str]:
    """ckpt_name values of the SDXL pair (the first run writes 4 GB, about 75 s; DREAMMIX_TEST_SDXL=0 skips)."""
    if os.environ.get("DREAMMIX_TEST_SDXL") == "0":
        pytest.skip("SDXL tests skipped by DREAMMIX_TEST_SDXL=0")
    if compat_scope():
        pytest.skip(COMPAT_REASON)
    return checkpoints.ensure(*SDXL_CHECKPOINTS)


@pytest.fixture(scope="session")
def flux_folder(comfy_install: ComfyInstall, checkpoints: CheckpointCache) -> Path:
    """The tiny FLUX diffusion models and VAEs this ComfyUI detects (FLUX.2 from v0.33 on)."""
    return generated_models(checkpoints.directory, comfy_install.path, comfy_install.python, MAKE_FLUX_MODELS)


@pytest.fixture(scope="session")
def qwen_folder(comfy_install: ComfyInstall, checkpoints: CheckpointCache) -> Path:
    """The tiny Qwen-Image and Z-Image DiTs, the Wan 2.1 VAE and the tiny Qwen2.5-VL (3.7 GB, written once, about
    a minute): only the tests of these families ask for them; the server knows their folder from the start."""
    return generated_models(checkpoints.directory, comfy_install.path, comfy_install.python, MAKE_QWEN_MODELS)


@pytest.fixture(scope="session")
def comfy_server(
    comfy_install: ComfyInstall,
    checkpoints: CheckpointCache,
    flux_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComfyServer]:
    """One ComfyUI server for the whole session, with the pack linked in as a custom node; its model folders
    hold the tiny checkpoints and the tiny FLUX models, and will hold the Qwen-Image / Z-Image ones."""
    qwen = model_folder(checkpoints.directory, comfy_install.path, MAKE_QWEN_MODELS)
    folders = {"diffusion_models": [flux_folder, qwen], "vae": [flux_folder, qwen], "text_encoders": [qwen]}
    for name, roots in folders.items():  # made now, so ComfyUI sees the files written into them later
        (qwen / name).mkdir(parents=True, exist_ok=True)
    server = start_server(
        comfy_install.path,
        comfy_install.python,
        PACK_ROOT,
        checkpoints.directory,
        tmp_path_factory.mktemp("comfyui"),
        model_folders={name: [root / name for root in roots] for name, roots in folders.items()},
    )
    yield server
    server.stop()


FP16_FLAG = "--fp16-intermediates"


@pytest.fixture(scope="module")
def fp16_server(
    comfy_install: ComfyInstall, checkpoints: CheckpointCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComfyServer]:
    """A second server started with --fp16-intermediates: IMAGE, MASK and LATENT travel as fp16."""
    if FP16_FLAG not in (comfy_install.path / "comfy" / "cli_args.py").read_text():
        pytest.skip(f"this ComfyUI has no {FP16_FLAG} option (v0.3.64 has none; v0.33 has it)")
    server = start_server(
        comfy_install.path,
        comfy_install.python,
        PACK_ROOT,
        checkpoints.directory,
        tmp_path_factory.mktemp("comfyui_fp16"),
        extra_flags=(FP16_FLAG,),
    )
    yield server
    server.stop()
