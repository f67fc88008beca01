"""A stand-in ComfyUI server for the batch runner's tests: the endpoints it uses, on a free local port."""

from __future__ import annotations

import http.server
import io
import json
import threading
from typing import Any

from PIL import Image

import dreammix_batch as batch

EXECUTION_ERROR = {
    "status_str": "error",
    "messages": [
        [
            "execution_error",
            {
                "node_id": "5",
                "node_type": "DreamMixInpaint",
                "exception_type": "DreamMixInputError",
                "exception_message": "The mask is empty",
            },
        ]
    ],
}
"""The history status of a prompt whose DreamMixInpaint node raised (what `fail` answers)."""


class FakeComfy:
    """A stand-in ComfyUI server (the endpoints the batch uses), answering each prompt with a grey image.

    The options give the other answers a real server can give:
    fail: every prompt fails in node 5 (EXECUTION_ERROR); can be switched on after the start.
    status: the history's status of every prompt, instead of success (an interrupted prompt, ...).
    outputs: the history's outputs of every prompt, instead of one image saved by the workflow's SaveImage.
    finished: while this event is not set, the history has no entry (the prompt is still running).
    node_info: /object_info answers by node class, instead of a node without inputs; {} = no such node.
    refusal: POST /prompt answers 400 with this JSON, as ComfyUI does for a workflow that fails validation.
    view_missing: GET /view answers 404.
    It records the queued graphs (`prompts`, refused ones too) and uploaded file names (`uploads`), and sets
    `prompted` when a prompt is queued.
    """

    def __init__(
        self,
        fail: bool = False,
        *,
        status: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        finished: threading.Event | None = None,
        node_info: dict[str, dict[str, Any]] | None = None,
        refusal: dict[str, Any] | None = None,
        view_missing: bool = False,
    ) -> None:
        self.fail = fail
        self.status, self.outputs, self.finished = status, outputs, finished
        self.node_info, self.refusal, self.view_missing = node_info or {}, refusal, view_missing
        self.prompts: list[dict] = []
        self.uploads: list[str] = []
        self.prompted = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def reply(self, body: bytes, kind: str = "application/json", code: int = 200) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/object_info/"):
                    name = self.path.rsplit("/", 1)[1]
                    info = fake.node_info.get(name, {"input": {"required": {}}})
                    self.reply(json.dumps({name: info} if info else {}).encode())
                elif self.path.startswith("/history/"):
                    prompt_id = self.path.rsplit("/", 1)[1]
                    if fake.finished is not None and not fake.finished.is_set():
                        self.reply(b"{}")
                        return
                    save = batch.find_roles(fake.prompts[int(prompt_id)]).save
                    outputs = {save: {"images": [{"filename": "x.png"}]}} if fake.outputs is None else fake.outputs
                    status = EXECUTION_ERROR if fake.fail else fake.status or {"status_str": "success"}
                    entry = {"status": status, "outputs": outputs}
                    self.reply(json.dumps({prompt_id: entry}).encode())
                elif self.path.startswith("/view") and not fake.view_missing:
                    png = io.BytesIO()
                    Image.new("RGB", (64, 48), (128, 128, 128)).save(png, format="PNG")
                    self.reply(png.getvalue(), "image/png")
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/upload/image":
                    name = body.split(b'filename="')[1].split(b'"')[0].decode()
                    fake.uploads.append(name)
                    self.reply(json.dumps({"name": name, "subfolder": "", "type": "input"}).encode())
                elif self.path == "/prompt":
                    fake.prompts.append(json.loads(body)["prompt"])
                    fake.prompted.set()
                    if fake.refusal is not None:
                        self.reply(json.dumps(fake.refusal).encode(), code=400)
                    else:
                        self.reply(json.dumps({"prompt_id": str(len(fake.prompts) - 1)}).encode())
                else:
                    self.send_error(404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
