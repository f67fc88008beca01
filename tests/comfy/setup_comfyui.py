"""Prepare a ComfyUI checkout for the ComfyUI test tier.

    python tests/comfy/setup_comfyui.py CHECKOUT [--python python3.11]
    python tests/comfy/setup_comfyui.py --from-tarballs DIR

The first gives CHECKOUT its own venv (CHECKOUT/.venv) with a CPU-capable torch, ComfyUI's
requirements and the pack's, generates the tier's random checkpoints, and writes
CHECKOUT/.dreammix-tier.json. The second unpacks every ComfyUI source tarball in DIR
(`ComfyUI-v*.tar.gz`: tracked files, no top folder, as `../shared/comfyui/` holds them) into
`$DREAMMIX_TEST_CACHE/comfyui/v<version>` and prepares it, skipping versions already prepared there.
`.ci/run` runs the tier against every checkout under
`$DREAMMIX_TEST_CACHE/comfyui/` (default `~/.cache/dreammix-tests/comfyui/`) that has that file.

The checkout itself is not touched apart from the venv folder and the marker file: ComfyUI
writes nothing into it during the tier (every writable folder is redirected, see server.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from checkpoint_cache import SD15_CHECKPOINTS, SDXL_CHECKPOINTS, CheckpointCache, default_cache_dir  # noqa: E402

PACK_ROOT = Path(__file__).resolve().parents[2]
MARKER = ".dreammix-tier.json"
VENV = ".venv"
# Local wheels on the project's machines; any other pin may download gigabytes of CUDA wheels.
DEFAULT_TORCH = ("torch==2.14.1", "torchvision==0.29.1")
# ComfyUI >= 0.2x imports torchaudio in comfy.sd. Its newest release pins an older torch but runs
# on torch 2.14 (checked by importing it below), so it goes in without its dependencies.
DEFAULT_TORCHAUDIO = "torchaudio==2.11.1"
# Installed above, so ComfyUI's requirements must not re-resolve them.
_TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}


def tier_cache_root() -> Path:
    """Where `.ci/run` looks for prepared checkouts: `<DREAMMIX_TEST_CACHE>/comfyui`."""
    return default_cache_dir().parent / "comfyui"


def prepared_checkouts(root: Path | None = None) -> list[tuple[Path, dict]]:
    """Every prepared checkout under `root` (default: `tier_cache_root()`), oldest version last."""
    root = root or tier_cache_root()
    found = [
        (marker.parent, json.loads(marker.read_text()))
        for marker in sorted(root.glob(f"*/{MARKER}"))
        if is_prepared(marker.parent)
    ]
    return sorted(found, key=lambda item: _version_key(item[1]["comfyui_version"]), reverse=True)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def _requirement_name(line: str) -> str:
    name = line.split("#", 1)[0].strip()
    for separator in "<>=!~[; ":
        name = name.split(separator, 1)[0]
    return name.lower()


def comfyui_requirements(checkout: Path) -> list[str]:
    """ComfyUI's requirements.txt without the torch packages (installed separately, pinned)."""
    lines = (checkout / "requirements.txt").read_text().splitlines()
    return [
        line.strip() for line in lines if _requirement_name(line) and _requirement_name(line) not in _TORCH_PACKAGES
    ]


def comfyui_version(checkout: Path) -> str:
    """`__version__` of comfyui_version.py, read as text (importing it would need ComfyUI's python)."""
    return _version_in((checkout / "comfyui_version.py").read_text(), str(checkout / "comfyui_version.py"))


def _version_in(text: str, where: str) -> str:
    """`__version__` of a comfyui_version.py's text."""
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SystemExit(f"no __version__ in {where}")


def tarball_version(tarball: Path) -> str:
    """The ComfyUI version a source tarball holds, read from its comfyui_version.py without unpacking it."""
    with tarfile.open(tarball) as archive:
        try:
            member = archive.extractfile("comfyui_version.py")
        except KeyError:
            member = None
        if member is None:
            raise SystemExit(f"{tarball} holds no comfyui_version.py at its top: not a ComfyUI source tarball")
        text = member.read().decode()
    return _version_in(text, f"{tarball}:comfyui_version.py")


def unpack(tarball: Path, root: Path) -> Path:
    """Unpack `tarball` into `root/v<version>` and return that folder; an existing checkout there is kept.

    The files go to a temporary folder beside it first, renamed into place once complete, so an interrupted
    unpack never leaves a half checkout that a later run would take for a whole one."""
    checkout = root / f"v{tarball_version(tarball)}"
    if (checkout / "main.py").is_file():
        return checkout
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{checkout.name}-", dir=root))
    try:
        with tarfile.open(tarball) as archive:
            # The "data" filter (no absolute paths, links out, devices) where this Python has it (3.10.12+).
            archive.extractall(staging, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        if checkout.exists():  # a folder without main.py: left by hand or by an older layout, never a checkout
            shutil.rmtree(checkout)
        staging.rename(checkout)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checkout


def is_prepared(checkout: Path) -> bool:
    marker = checkout / MARKER
    return marker.is_file() and Path(json.loads(marker.read_text())["python"]).is_file()


def _run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def prepare(checkout: Path, python: str, torch: tuple[str, ...], torchaudio: str, sdxl: bool) -> dict:
    if not (checkout / "main.py").is_file() or not (checkout / "comfyui_version.py").is_file():
        raise SystemExit(f"{checkout} is not a ComfyUI checkout (no main.py / comfyui_version.py)")
    started = time.monotonic()
    venv_python = checkout / VENV / "bin" / "python"
    if not venv_python.is_file():
        _run(python, "-m", "venv", str(checkout / VENV))
    pip = (str(venv_python), "-m", "pip", "install", "--quiet")
    _run(*pip, *torch)
    _run(*pip, "--no-deps", torchaudio)
    _run(str(venv_python), "-c", "import torch, torchaudio.functional")
    with tempfile.TemporaryDirectory() as folder:
        requirements, constraints = Path(folder) / "requirements.txt", Path(folder) / "constraints.txt"
        requirements.write_text("\n".join(comfyui_requirements(checkout)) + "\n")
        # Keeps whatever ComfyUI's requirements pull in from replacing the pinned torch.
        constraints.write_text("\n".join(pin for pin in torch if "==" in pin) + "\n")
        _run(*pip, "-r", str(requirements), "-r", str(PACK_ROOT / "requirements.txt"), "-c", str(constraints))
    version = comfyui_version(checkout)
    print(f"ComfyUI {version}: venv ready in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    cache = CheckpointCache(default_cache_dir(), checkout, str(venv_python))
    names = SD15_CHECKPOINTS + (SDXL_CHECKPOINTS if sdxl else ())
    print(f"checkpoints {', '.join(names)} in {cache.directory}", flush=True)
    cache.ensure(*names)
    print(f"ComfyUI {version}: checkpoints ready in {time.monotonic() - started:.0f} s", flush=True)
    info = {
        "comfyui_version": version,
        "python": str(venv_python),
        "torch": [*torch, torchaudio],
        "prepared": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (checkout / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, nargs="?", help="a ComfyUI checkout (git clone of ComfyUI)")
    parser.add_argument(
        "--list",
        action="store_true",
        help="print 'VERSION<TAB>COMFYUI_PATH<TAB>COMFYUI_PYTHON' per prepared checkout in the cache, newest first",
    )
    parser.add_argument(
        "--from-tarballs",
        type=Path,
        metavar="DIR",
        help="unpack and prepare every ComfyUI-v*.tar.gz in DIR not yet prepared in the cache, newest first",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter that creates the venv (>= 3.10)")
    parser.add_argument(
        "--torch", nargs="+", default=list(DEFAULT_TORCH), help="torch requirements for the venv (default: %(default)s)"
    )
    parser.add_argument("--torchaudio", default=DEFAULT_TORCHAUDIO, help="installed without dependencies")
    parser.add_argument("--no-sdxl", action="store_true", help="skip the 4 GB SDXL test checkpoints")
    args = parser.parse_args(argv)
    if args.list:
        for path, info in prepared_checkouts():
            print(f"{info['comfyui_version']}\t{path}\t{info['python']}")
        return
    if args.from_tarballs is not None:
        tarballs = sorted(args.from_tarballs.glob("ComfyUI-v*.tar.gz"), key=lambda t: _version_key(tarball_version(t)))
        if not tarballs:
            raise SystemExit(f"no ComfyUI-v*.tar.gz in {args.from_tarballs}")
        checkouts = [unpack(tarball, tier_cache_root()) for tarball in reversed(tarballs)]
    elif args.checkout is not None:
        checkouts = [args.checkout.resolve()]
    else:
        parser.error("give a ComfyUI checkout to prepare, --from-tarballs DIR, or --list")
    for checkout in checkouts:
        if args.from_tarballs is not None and is_prepared(checkout):
            print(f"ComfyUI at {checkout} is prepared already", flush=True)
            continue
        info = prepare(checkout, args.python, tuple(args.torch), args.torchaudio, sdxl=not args.no_sdxl)
        print(f"ComfyUI {info['comfyui_version']} prepared: COMFYUI_PATH={checkout} COMFYUI_PYTHON={info['python']}")


if __name__ == "__main__":
    main()
