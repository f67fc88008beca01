"""ComfyUI started inside this process, for a batch run without a separate server.

ComfyUI's `main.py` exposes `start_comfyui()` ("so that other code can integrate with the ComfyUI
loop and server"): it loads every node (the user's custom nodes, this pack among them) and returns
the event loop and a coroutine that serves the HTTP API. The loop then runs in a daemon thread of
this process, on a free 127.0.0.1 port, and the batch talks to it like to any server. This needs the
python that runs ComfyUI (its torch and requirements); nothing else is started.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from dreammix_core.errors import DreamMixInputError

STARTUP_TIMEOUT = 600.0
"""Seconds ComfyUI may take to import its nodes and answer (custom nodes can be slow to import)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def comfyui_arguments(extra: str, port: int) -> list[str]:
    """ComfyUI's command line: the user's `--comfyui-args`, then a local port of our choosing."""
    return ["main.py", *shlex.split(extra), "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/object_info/KSampler", timeout=10) as response:
            return bool(json.loads(response.read()))
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False


def start_comfyui(comfyui: str | Path, extra_args: str = "", timeout: float = STARTUP_TIMEOUT) -> str:
    """Start the ComfyUI checkout `comfyui` in this process; return its URL once it answers."""
    root = Path(comfyui).expanduser().resolve()
    if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
        raise DreamMixInputError(f"--comfyui '{comfyui}' is not a ComfyUI folder (no main.py and comfy/ in it).")
    port = _free_port()
    sys.argv = comfyui_arguments(extra_args, port)  # ComfyUI parses its options from sys.argv on import
    sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location("comfyui_main", root / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "start_comfyui"):
        raise DreamMixInputError(f"The ComfyUI in '{root}' has no start_comfyui(); update it to 0.3.64 or newer.")
    loop, _, start_all = module.start_comfyui()
    serving = threading.Thread(target=loop.run_until_complete, args=(start_all(),), name="comfyui", daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if not serving.is_alive():
            raise DreamMixInputError(f"ComfyUI in '{root}' stopped while starting; see its messages above.")
        if time.monotonic() > deadline:
            raise DreamMixInputError(f"ComfyUI in '{root}' did not answer within {timeout:.0f} s.")
        serving.join(0.5)
    return url
