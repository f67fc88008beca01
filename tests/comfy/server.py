"""Run a real ComfyUI server for the ComfyUI test tier and talk to it over HTTP.

The pytest process never imports `comfy`: ComfyUI runs as `COMFYUI_PYTHON main.py` in a
subprocess, exactly as a user starts it, with every writable folder (base, input, output,
temp, user, database) redirected into a temporary directory so nothing is written into
the ComfyUI checkout.  The pack is loaded the way users install it: a folder named
`ComfyUI-DreamMix` (a symlink to the repo) inside the `custom_nodes` folder of
`--base-directory`. Beside it the only other custom node is `test_nodes/` (test-only loaders for
models ComfyUI's own nodes load at full size only).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from device import comfyui_device_flags
from PIL import Image

from dreammix_batch.client import multipart

PACK_DIR_NAME = "ComfyUI-DreamMix"
TEST_NODES = Path(__file__).resolve().parent / "test_nodes"
LOG_TAIL_CHARS = 6000
_LOADER_LINE = "Trying to load custom node "  # logged at DEBUG before each custom node import
_IMPORT_TIMES_HEADER = "Import times for custom nodes:"
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL_TAG = re.compile(r"^\[(?:DEBUG|DETAIL|INFO|WARNING|ERROR|CRITICAL)\] ")
"""ComfyUI 0.2x on starts each console line with a coloured level tag; older versions print neither."""
_PROBLEM_WORDS = re.compile(r"warn|error|exception|traceback|cannot import|failed|deprecat", re.IGNORECASE)


class ServerDied(RuntimeError):
    """The ComfyUI process exited while a test still needed it."""


class PromptRejected(RuntimeError):
    """POST /prompt refused the graph at validation time."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any]) -> None:
        super().__init__(
            f"prompt rejected: {error.get('message')}: {error.get('details')}\n"
            f"node_errors: {json.dumps(node_errors, indent=1)}"
        )
        self.error = error
        self.node_errors = node_errors


class ExecutionFailed(RuntimeError):
    """A node raised while the prompt executed (ComfyUI's `execution_error` message)."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.node_id: str = message.get("node_id", "")
        self.node_type: str = message.get("node_type", "")
        self.exception_type: str = message.get("exception_type", "")
        self.exception_message: str = message.get("exception_message", "")
        self.traceback: str = "".join(message.get("traceback", []))
        super().__init__(
            f"node {self.node_id} ({self.node_type}) failed: "
            f"{self.exception_type}: {self.exception_message}\n{self.traceback}"
        )


class Interrupted(RuntimeError):
    """The prompt was stopped by POST /interrupt."""


@dataclass(frozen=True)
class ServerLayout:
    """Every folder a test server reads or writes, all under one temporary root."""

    root: Path

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def custom_nodes_dir(self) -> Path:
        return self.base_dir / "custom_nodes"

    @property
    def pack_link(self) -> Path:
        return self.custom_nodes_dir / PACK_DIR_NAME

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def temp_dir(self) -> Path:
        return self.root / "temp"

    @property
    def loras_dir(self) -> Path:
        return self.root / "models" / "loras"

    @property
    def upscale_models_dir(self) -> Path:
        return self.root / "models" / "upscale_models"

    @property
    def extra_model_paths(self) -> Path:
        return self.root / "extra_model_paths.yaml"

    @property
    def log_path(self) -> Path:
        return self.root / "comfyui.log"

    def create(
        self, pack_root: Path, checkpoints_dir: Path, model_folders: dict[str, list[Path]] | None = None
    ) -> None:
        """Make the folders, link the pack and the test nodes in as custom nodes, write the model-paths yaml;
        `model_folders` adds search paths by ComfyUI folder name (diffusion_models, vae, ...)."""
        for folder in (
            self.custom_nodes_dir,
            self.input_dir,
            self.output_dir,
            self.temp_dir,
            self.loras_dir,
            self.upscale_models_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.pack_link.symlink_to(pack_root.resolve(), target_is_directory=True)
        (self.custom_nodes_dir / "dreammix_test_nodes").symlink_to(TEST_NODES, target_is_directory=True)
        search_paths = {
            "checkpoints": str(checkpoints_dir.resolve()),
            "loras": str(self.loras_dir),
            "upscale_models": str(self.upscale_models_dir),
            **{name: "\n".join(str(f.resolve()) for f in folders) for name, folders in (model_folders or {}).items()},
            # First in each list, so nodes that write a model (the trainer's LoRA) write it here.
            "is_default": True,
        }
        # JSON is valid YAML; a key takes one folder per line.
        self.extra_model_paths.write_text(json.dumps({"dreammix_tests": search_paths}, indent=2))


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redirect_flags(layout: ServerLayout) -> list[str]:
    """ComfyUI options that send every folder it reads or writes into `layout`, on the test device (CPU unless
    DREAMMIX_TEST_DEVICE says otherwise), logging at DEBUG."""
    options = {
        "--base-directory": str(layout.base_dir),
        "--output-directory": str(layout.output_dir),
        "--input-directory": str(layout.input_dir),
        "--temp-directory": str(layout.temp_dir),
        "--extra-model-paths-config": str(layout.extra_model_paths),
        # The default database lives in <ComfyUI>/user, which must stay untouched.
        "--database-url": "sqlite:///:memory:",
        # DEBUG makes ComfyUI log "Trying to load custom node <path>" before importing the
        # pack, which delimits the pack's own import output in the log.
        "--verbose": "DEBUG",
    }
    # API nodes call paid web services: irrelevant here and slow to import.
    return [*comfyui_device_flags(), "--disable-api-nodes", *(part for option in options.items() for part in option)]


def comfyui_command(python: str, layout: ServerLayout, port: int, extra_flags: tuple[str, ...] = ()) -> list[str]:
    """`main.py` as a user runs it, with all state redirected into `layout`, plus `extra_flags`."""
    listen = ["--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]
    return [python, "main.py", *listen, *redirect_flags(layout), *extra_flags]


def start_server(
    comfyui: Path,
    python: str,
    pack_root: Path,
    checkpoints_dir: Path,
    root: Path,
    timeout: float = 300.0,
    extra_flags: tuple[str, ...] = (),
    model_folders: dict[str, list[Path]] | None = None,
) -> ComfyServer:
    """Start ComfyUI and return once /object_info answers (all nodes, the pack included, loaded)."""
    layout = ServerLayout(root)
    layout.create(pack_root, checkpoints_dir, model_folders)
    port = free_port()
    with open(layout.log_path, "wb") as log:
        process = subprocess.Popen(
            comfyui_command(python, layout, port, extra_flags),
            cwd=comfyui,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = ComfyServer(layout=layout, url=f"http://127.0.0.1:{port}", process=process)
    try:
        server.wait_until_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class ComfyServer:
    """Client for one running ComfyUI process started by `start_server`."""

    layout: ServerLayout
    url: str
    process: subprocess.Popen

    # --- process and log -------------------------------------------------------------

    def log_text(self) -> str:
        """Everything ComfyUI printed so far (stdout and stderr)."""
        return self.layout.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log_text()[-chars:]

    def check_alive(self) -> None:
        """Raise with the log tail if ComfyUI has exited."""
        if self.process.poll() is not None:
            raise ServerDied(
                f"ComfyUI exited with code {self.process.returncode}; log {self.layout.log_path}:\n{self.log_tail()}"
            )

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.object_info("CheckpointLoaderSimple")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(
            f"ComfyUI did not answer within {timeout:.0f}s; log {self.layout.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    # --- the pack's import, as seen in the startup log ---------------------------------

    def pack_import_log(self) -> str | None:
        """Lines logged while ComfyUI imported the pack, or None if it never tried to.

        Relies on --verbose DEBUG, which logs "Trying to load custom node <path>" before
        each custom-node import; the pack is the only custom node, so its output runs up
        to the "Import times for custom nodes:" summary.
        """
        lines = [_LEVEL_TAG.sub("", _ANSI_COLOUR.sub("", line)) for line in self.log_text().splitlines()]
        start = f"{_LOADER_LINE}{self.layout.pack_link}"
        if start not in lines:
            return None
        segment = []
        for line in lines[lines.index(start) + 1 :]:
            if line.startswith((_LOADER_LINE, _IMPORT_TIMES_HEADER)):
                break
            segment.append(line)
        return "\n".join(segment)

    def pack_import_problems(self) -> list[str]:
        """Errors, tracebacks and warnings from importing the pack; empty when the import was clean."""
        segment = self.pack_import_log()
        if segment is None:
            return [f"ComfyUI never tried to import {self.layout.pack_link}"]
        problems = [line for line in segment.splitlines() if _PROBLEM_WORDS.search(line)]
        pack = str(self.layout.pack_link)
        summary = [line for line in self.log_text().splitlines() if line.endswith(f": {pack}")]
        if not summary:
            problems.append(f"no import-times entry for {pack}")
        problems += [line.strip() for line in summary if "IMPORT FAILED" in line]
        return problems

    # --- HTTP API ------------------------------------------------------------------------

    def _request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60.0
    ) -> bytes:
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def _get_json(self, path: str) -> Any:
        return json.loads(self._request(path))

    def _post_json(self, path: str, payload: dict[str, Any]) -> bytes:
        return self._request(path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """GET /object_info (all node classes) or /object_info/<class> ({} if unknown)."""
        suffix = "" if node_class is None else "/" + urllib.parse.quote(node_class)
        return self._get_json("/object_info" + suffix)

    def workflow_templates(self) -> dict[str, list[str]]:
        """GET /workflow_templates: custom-node folder name → the workflow names its template browser lists."""
        return self._get_json("/workflow_templates")

    def workflow_template(self, pack: str, name: str) -> dict[str, Any]:
        """One listed template as the browser fetches it (GET /api/workflow_templates/<pack>/<name>.json)."""
        path = f"/api/workflow_templates/{urllib.parse.quote(pack)}/{urllib.parse.quote(name)}.json"
        return self._get_json(path)

    def queue_prompt(self, graph: dict[str, Any]) -> str:
        """POST an API-format graph; returns its prompt_id, raises PromptRejected if invalid."""
        try:
            body = self._post_json("/prompt", {"prompt": graph, "client_id": uuid.uuid4().hex})
        except urllib.error.HTTPError as err:
            if err.code != 400:
                raise
            rejected = json.loads(err.read())
            raise PromptRejected(rejected.get("error", {}), rejected.get("node_errors", {})) from None
        return json.loads(body)["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict[str, Any]:
        """Block until the prompt finishes; return its /history entry or raise why it failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            entry = self._get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:  # ComfyUI adds the history entry when the prompt is done
                return _raise_on_failure(entry)
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} still running after {timeout:.0f}s; log tail:\n{self.log_tail()}")

    def wait_for_running_prompt(self, timeout: float = 300.0) -> None:
        """Block until the server reports a prompt in execution (its /queue's running list)."""
        deadline = time.monotonic() + timeout
        while not self._get_json("/queue")["queue_running"]:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no prompt started within {timeout:.0f}s; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def run(self, graph: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        """queue_prompt + wait."""
        return self.wait(self.queue_prompt(graph), timeout)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt: stop the running prompt (only `prompt_id`, if given)."""
        self._post_json("/interrupt", {} if prompt_id is None else {"prompt_id": prompt_id})

    def upload_image(self, image: np.ndarray | Image.Image, name: str) -> str:
        """POST /upload/image as the frontend does; returns the name LoadImage takes.

        An RGBA image's alpha becomes LoadImage's MASK output as 1 - alpha (alpha 0 = inpaint).
        """
        pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
        png = io.BytesIO()
        pil.save(png, format="PNG")
        body, content_type = multipart({"overwrite": "true", "type": "input"}, "image", name, png.getvalue())
        reply = json.loads(self._request("/upload/image", body, {"Content-Type": content_type}))
        return f"{reply['subfolder']}/{reply['name']}" if reply["subfolder"] else reply["name"]

    def output_images(self, entry: dict[str, Any], node_id: str | None = None) -> list[np.ndarray]:
        """Images an executed prompt produced (all output nodes, or one), as HxWxC uint8 arrays."""
        outputs = entry["outputs"]
        node_ids = sorted(outputs, key=str) if node_id is None else [node_id]
        return [self.view(ref) for nid in node_ids for ref in outputs[nid].get("images", [])]

    def view(self, ref: dict[str, str]) -> np.ndarray:
        """GET /view for one {filename, subfolder, type} reference."""
        query = urllib.parse.urlencode({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
        with Image.open(io.BytesIO(self._request(f"/view?{query}"))) as img:
            return np.asarray(img).copy()


def _raise_on_failure(entry: dict[str, Any]) -> dict[str, Any]:
    """Turn an error status in a /history entry into ExecutionFailed / Interrupted."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return entry
    for event, data in status.get("messages", []):
        if event == "execution_error":
            raise ExecutionFailed(data)
        if event == "execution_interrupted":
            raise Interrupted(f"interrupted at node {data.get('node_id')} ({data.get('node_type')})")
    raise RuntimeError(f"prompt failed without an error message: {json.dumps(status)}")
