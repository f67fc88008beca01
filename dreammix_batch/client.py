"""The few ComfyUI HTTP endpoints a batch needs: upload, prompt, history, view, object_info."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from dreammix_core.errors import DreamMixInputError


class ServerError(RuntimeError):
    """A server refused or failed a prompt, or could not be reached."""


def with_scheme(url: str) -> str:
    """A server address as typed, with http:// added when it has no scheme ('127.0.0.1:8188')."""
    return url if "://" in url else "http://" + url


def check_server_address(url: str) -> None:
    """A --server value must be http(s)://host[:port] with a numeric port; the message says what is off."""
    parts = urllib.parse.urlsplit(with_scheme(url))
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise DreamMixInputError(
            f"--server '{url}' is not a server address: write it as http://HOST:PORT, e.g. http://127.0.0.1:8188."
        )


class ComfyClient:
    """The few ComfyUI endpoints a batch needs: upload, prompt, history, view, object_info."""

    def __init__(self, url: str, poll: float = 0.25) -> None:
        self.url = with_scheme(url.rstrip("/"))
        self.poll = poll

    def _request(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()

    def get_json(self, path: str) -> Any:
        return json.loads(self._request(path))

    def object_info(self, node_class: str) -> dict[str, Any]:
        return self.get_json("/object_info/" + urllib.parse.quote(node_class)).get(node_class, {})

    def upload_image(self, png: bytes, name: str) -> str:
        body, content_type = multipart({"overwrite": "true", "type": "input"}, "image", name, png)
        reply = json.loads(self._request("/upload/image", body, {"Content-Type": content_type}))
        return f"{reply['subfolder']}/{reply['name']}" if reply.get("subfolder") else reply["name"]

    def queue_prompt(self, graph: dict[str, Any]) -> str:
        body = json.dumps({"prompt": graph, "client_id": uuid.uuid4().hex}).encode()
        try:
            reply = self._request("/prompt", body, {"Content-Type": "application/json"})
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                rejected = json.loads(detail)
                error_info = rejected.get("error", {})
                nodes = [
                    f"{nid} ({info.get('class_type')}): "
                    + "; ".join(_said(e.get("message"), e.get("details")) for e in info.get("errors", []))
                    for nid, info in rejected.get("node_errors", {}).items()
                ]
                detail = " | ".join([_said(error_info.get("message"), error_info.get("details")), *nodes])
            except (ValueError, AttributeError):
                pass
            raise ServerError(f"{self.url} refused the workflow: {detail.strip()}") from None
        return json.loads(reply)["prompt_id"]

    def wait(self, prompt_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str", "success") == "success":
                    return entry
                for event, data in status.get("messages", []):
                    if event == "execution_error":
                        raise ServerError(
                            f"node {data.get('node_id')} ({data.get('node_type')}) failed on {self.url}: "
                            f"{data.get('exception_type')}: {data.get('exception_message')}"
                        )
                    if event == "execution_interrupted":
                        raise ServerError(f"the prompt was interrupted on {self.url}")
                raise ServerError(f"the prompt failed on {self.url}: {json.dumps(status)[:500]}")
            time.sleep(self.poll)
        raise ServerError(f"the prompt was still running on {self.url} after {timeout:g} s")

    def view(self, ref: dict[str, str]) -> bytes:
        query = urllib.parse.urlencode({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
        return self._request(f"/view?{query}")

    def run(self, graph: dict[str, Any], output_node: str, timeout: float) -> bytes:
        """Queues the graph, waits, and returns the first image `output_node` saved (PNG bytes)."""
        entry = self.wait(self.queue_prompt(graph), timeout)
        images = entry.get("outputs", {}).get(output_node, {}).get("images", [])
        if not images:
            raise ServerError(f"the workflow ran on {self.url} but node {output_node} saved no image")
        return self.view(images[0])


def _combo_options(info: dict[str, Any], name: str) -> list[str] | None:
    """A combo input's options from /object_info (old list form or V3 'COMBO' form); None if not found."""
    for group in ("required", "optional"):
        spec = info.get("input", {}).get(group, {}).get(name)
        if spec:
            if isinstance(spec[0], list):
                return [str(option) for option in spec[0]]
            if len(spec) > 1 and isinstance(spec[1], dict) and "options" in spec[1]:
                return [str(option) for option in spec[1]["options"]]
    return None


def check_server(client: ComfyClient, graph: dict[str, Any]) -> None:
    """Fails early, with what to do, when a server is unreachable or lacks a node, checkpoint or LoRA."""
    try:
        client.get_json("/object_info/DreamMixInpaint")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
        raise ServerError(f"No ComfyUI server answers at {client.url} ({error}). Start it, or fix --server.") from None
    for node in graph.values():
        info = client.object_info(node["class_type"])
        if not info:
            raise ServerError(
                f"The server at {client.url} has no node '{node['class_type']}'"
                + (": install ComfyUI-DreamMix there." if node["class_type"].startswith("DreamMix") else ".")
            )
        for name in ("ckpt_name", "lora_name"):
            value = node["inputs"].get(name)
            options = _combo_options(info, name) if isinstance(value, str) else None
            if options is not None and value not in options:
                raise ServerError(
                    f"The server at {client.url} has no {name.split('_')[0]} '{value}'; it has: "
                    f"{', '.join(options[:20]) or 'none'}."
                )


def _said(message: object, details: object) -> str:
    """ComfyUI's "message: details", without the colon when it sent no details (validation errors often do not)."""
    return ": ".join(str(part) for part in (message, details) if part)


def multipart(fields: dict[str, str], file_field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with text fields and one PNG file, and its Content-Type (the stdlib has no
    encoder); /upload/image takes it as the frontend sends it."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
