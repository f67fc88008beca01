"""Headless batch runs of a DreamMix API workflow over a folder of cases, with the paper's metrics.

    python -m dreammix_core.batch CASES --out OUT --server http://127.0.0.1:8188 [--server ...]
        [--workflow workflows/api/dreammix_inpaint.json] [--seeds 0 1 2] [--ckpt NAME] [--lora NAME]
        [--references DIR] [--class-word WORD] [--clip-model SRC] [--dino-model SRC]

Each case is a folder `CASES/<name>/` holding `scene.png`, `mask.png` (white = where the subject
goes) and `prompt.txt`; optionally `references/` (photos of the subject) and `class_word.txt`.
Every case folder is checked before anything runs. The scene goes to each ComfyUI server as an RGBA
PNG through POST /upload/image, its alpha the inverted mask (ComfyUI's LoadImage gives MASK =
1 - alpha), and the workflow runs once per seed. Several servers share the cases, one worker thread
each. A result already in `OUT/images/<case>/seed<seed>.png` is not run again, so a stopped batch
resumes where it stopped.

The results table (`OUT/results.csv`, `OUT/results.md`: one row per case and the mean, CLIP-T /
CLIP-I / DINO as in the paper's Table 1) is scored here, in the client's python, whenever the
metric models are at hand (a local folder, or the local Hugging Face cache); otherwise its columns
stay empty and a note says why.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import DreamMixInputError

PACK_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOW = PACK_ROOT / "workflows" / "api" / "dreammix_inpaint.json"
DEFAULT_SERVER = "http://127.0.0.1:8188"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CASE_FILES = ("scene.png", "mask.png", "prompt.txt")
OUTPUT_PREFIX = "dreammix_batch"
METRIC_COLUMNS = ("CLIP-T", "CLIP-I", "DINO")


# --- cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    prompt: str
    references: tuple[Path, ...] = ()
    class_word: str = ""

    @property
    def scene(self) -> Path:
        return self.folder / "scene.png"

    @property
    def mask(self) -> Path:
        return self.folder / "mask.png"


def _images_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))


def _image_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
    if not path.is_file():
        problems.append(f"{path}: missing")
        return None
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except Exception as error:  # PIL raises several types for unreadable files
        problems.append(f"{path}: not a readable image ({error})")
        return None


def _case_references(folder: Path, name: str, references: Path | None) -> tuple[Path, ...]:
    """The case's own `references/`, else `REFERENCES/<case>/`, else the images in `REFERENCES`."""
    for candidate in (folder / "references", None if references is None else references / name):
        if candidate is not None and candidate.is_dir():
            return _images_in(candidate)
    return () if references is None else _images_in(references)


def load_cases(cases_dir: str | Path, references: str | Path | None = None, class_word: str = "") -> list[Case]:
    """Every case folder under `cases_dir`, checked; one DreamMixInputError lists every problem by file."""
    cases_dir = Path(cases_dir)
    if not cases_dir.is_dir():
        raise DreamMixInputError(f"The cases folder '{cases_dir}' does not exist.")
    refs_dir = None if references is None else Path(references)
    if refs_dir is not None and not refs_dir.is_dir():
        raise DreamMixInputError(f"The references folder '{refs_dir}' does not exist.")
    folders = sorted(p for p in cases_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DreamMixInputError(
            f"'{cases_dir}' holds no case folders: put each case in <cases>/<name>/ with {', '.join(CASE_FILES)}."
        )
    cases, problems = [], []
    for folder in folders:
        found: list[str] = []
        scene_size = _image_size(folder / "scene.png", found)
        mask_size = _image_size(folder / "mask.png", found)
        if scene_size and mask_size:
            if scene_size != mask_size:
                found.append(
                    f"{folder / 'mask.png'}: is {mask_size[0]}x{mask_size[1]} but scene.png is "
                    f"{scene_size[0]}x{scene_size[1]}; the mask must have the scene's size"
                )
            else:
                with Image.open(folder / "mask.png") as mask:
                    if not (np.asarray(mask.convert("L")) >= 128).any():
                        found.append(f"{folder / 'mask.png'}: is empty (no white pixel marks where the subject goes)")
        prompt_path = folder / "prompt.txt"
        prompt = ""
        if not prompt_path.is_file():
            found.append(f"{prompt_path}: missing")
        else:
            prompt = " ".join(prompt_path.read_text(encoding="utf-8", errors="replace").split())
            if not prompt:
                found.append(f"{prompt_path}: is empty; write the prompt for this case in it")
        word_path = folder / "class_word.txt"
        word = " ".join(word_path.read_text().split()) if word_path.is_file() else " ".join(class_word.split())
        problems += found
        if not found:
            cases.append(Case(folder.name, folder, prompt, _case_references(folder, folder.name, refs_dir), word))
    if problems:
        raise DreamMixInputError("Malformed case folders:\n  " + "\n  ".join(problems))
    return cases


def scene_with_alpha(case: Case) -> bytes:
    """The scene as an RGBA PNG whose alpha is 255 - mask: transparent where the subject goes."""
    with Image.open(case.scene) as scene, Image.open(case.mask) as mask:
        rgba = scene.convert("RGB")
        rgba.putalpha(Image.fromarray(255 - np.asarray(mask.convert("L"))))
    data = io.BytesIO()
    rgba.save(data, format="PNG")
    return data.getvalue()


# --- the workflow ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What the command line changes in the workflow besides the case's scene, prompt and seed."""

    ckpt: str | None = None
    lora: str | None = None
    lora_strength: float = 1.0
    lora_model_only: bool = False
    steps: int | None = None
    resolution: int | None = None
    cfg: float | None = None


@dataclass(frozen=True)
class Roles:
    """Node ids in the API workflow, found by class_type."""

    inpaint: str
    prompt: str
    scene: str
    save: str
    checkpoint: str | None


def _link(value: Any) -> str | None:
    return str(value[0]) if isinstance(value, list) and len(value) == 2 else None


def find_roles(graph: dict[str, Any], where: str = "the workflow") -> Roles:
    def of_type(*types: str) -> list[str]:
        return [nid for nid, node in graph.items() if node.get("class_type") in types]

    inpaint = of_type("DreamMixInpaint")
    if len(inpaint) != 1:
        raise DreamMixInputError(f"{where} must have exactly one DreamMixInpaint node; it has {len(inpaint)}.")
    (inpaint_id,) = inpaint
    inputs = graph[inpaint_id].get("inputs", {})
    prompt_id = _link(inputs.get("positive"))
    if prompt_id is None or graph.get(prompt_id, {}).get("class_type") != "CLIPTextEncode":
        raise DreamMixInputError(f"In {where}, DreamMixInpaint's positive must come from a CLIPTextEncode node.")
    scene_id = _link(inputs.get("image"))
    if scene_id is None or graph.get(scene_id, {}).get("class_type") != "LoadImage":
        loaders = of_type("LoadImage")
        if len(loaders) != 1:
            raise DreamMixInputError(f"{where} needs one LoadImage node for the scene; it has {len(loaders)}.")
        scene_id = loaders[0]
    saves = of_type("SaveImage")
    fed = [nid for nid in saves if _link(graph[nid].get("inputs", {}).get("images")) == inpaint_id]
    if not (fed or len(saves) == 1):
        raise DreamMixInputError(f"{where} needs a SaveImage node fed by DreamMixInpaint.")
    checkpoints = of_type("CheckpointLoaderSimple")
    return Roles(inpaint_id, prompt_id, scene_id, (fed or saves)[0], checkpoints[0] if len(checkpoints) == 1 else None)


def load_workflow(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        graph = json.loads(path.read_text())
    except FileNotFoundError:
        raise DreamMixInputError(f"The workflow '{path}' does not exist.") from None
    except json.JSONDecodeError as error:
        raise DreamMixInputError(f"The workflow '{path}' is not JSON: {error}") from None
    if (
        not isinstance(graph, dict)
        or "nodes" in graph
        or not all(isinstance(node, dict) and "class_type" in node for node in graph.values())
    ):
        raise DreamMixInputError(
            f"'{path}' is not an API-format workflow (node id → class_type and inputs); save it from ComfyUI with "
            f"'Export (API)', or use one from workflows/api/."
        )
    find_roles(graph, f"the workflow '{path}'")
    return graph


def _add_lora(graph: dict[str, Any], checkpoint: str, options: Options) -> None:
    """Sets the workflow's LoRA loader, or inserts one after the checkpoint loader and rewires its consumers."""
    loaders = [n for n in graph.values() if n["class_type"] in ("LoraLoader", "LoraLoaderModelOnly")]
    if loaders:
        for node in loaders:
            node["inputs"]["lora_name"] = options.lora
            node["inputs"]["strength_model"] = options.lora_strength
            if "strength_clip" in node["inputs"]:
                node["inputs"]["strength_clip"] = options.lora_strength
        return
    numeric = [int(nid) for nid in graph if str(nid).isdigit()]
    lora_id = str(max(numeric, default=0) + 1)
    outputs = (0,) if options.lora_model_only else (0, 1)
    for node in graph.values():
        for name, value in node["inputs"].items():
            if _link(value) == checkpoint and value[1] in outputs:
                node["inputs"][name] = [lora_id, value[1]]
    inputs: dict[str, Any] = {
        "model": [checkpoint, 0],
        "lora_name": options.lora,
        "strength_model": options.lora_strength,
    }
    if options.lora_model_only:
        graph[lora_id] = {"class_type": "LoraLoaderModelOnly", "inputs": inputs, "_meta": {"title": "Subject LoRA"}}
    else:
        inputs.update(clip=[checkpoint, 1], strength_clip=options.lora_strength)
        graph[lora_id] = {"class_type": "LoraLoader", "inputs": inputs, "_meta": {"title": "Subject LoRA"}}


def prepare_graph(
    template: dict[str, Any], image_name: str, prompt: str, seed: int, prefix: str, options: Options = Options()
) -> dict[str, Any]:
    """The workflow for one case and seed: scene, prompt, seed and output prefix set, options applied."""
    graph = copy.deepcopy(template)
    roles = find_roles(graph)
    graph[roles.scene]["inputs"]["image"] = image_name
    graph[roles.prompt]["inputs"]["text"] = prompt
    inpaint = graph[roles.inpaint]["inputs"]
    inpaint["seed"] = int(seed)
    for name in ("steps", "resolution", "cfg"):
        if getattr(options, name) is not None:
            inpaint[name] = getattr(options, name)
    graph[roles.save]["inputs"]["filename_prefix"] = prefix
    if (options.ckpt or options.lora) and roles.checkpoint is None:
        raise DreamMixInputError("--ckpt and --lora need a workflow with exactly one CheckpointLoaderSimple node.")
    if options.ckpt:
        graph[roles.checkpoint]["inputs"]["ckpt_name"] = options.ckpt
    if options.lora:
        _add_lora(graph, roles.checkpoint, options)
    return graph


# --- a ComfyUI server over HTTP ------------------------------------------------------------------


class ServerError(RuntimeError):
    """A server refused or failed a prompt, or could not be reached."""


class ComfyClient:
    """The few ComfyUI endpoints a batch needs: upload, prompt, history, view, object_info."""

    def __init__(self, url: str, poll: float = 0.25) -> None:
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
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
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
            for key, value in (("overwrite", "true"), ("type", "input"))
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + png
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        reply = json.loads(self._request("/upload/image", b"".join(parts), headers))
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
                    + "; ".join(f"{e.get('message')}: {e.get('details')}" for e in info.get("errors", []))
                    for nid, info in rejected.get("node_errors", {}).items()
                ]
                detail = f"{error_info.get('message')}: {error_info.get('details')} " + " | ".join(nodes)
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
        raise ServerError(f"the prompt was still running on {self.url} after {timeout:.0f} s")

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


# --- running -------------------------------------------------------------------------------------


def image_path(out: Path, case: Case, seed: int) -> Path:
    return out / "images" / case.name / f"seed{seed}.png"


@dataclass
class RunReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    by_server: dict[str, list[str]] = field(default_factory=dict)


class _Progress:
    """tqdm when it is installed, else one line per finished image."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.lock = total, 0, threading.Lock()
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="image", desc="DreamMix batch")
        except ImportError:
            self.bar = None

    def step(self, what: str) -> None:
        with self.lock:
            self.done += 1
            if self.bar is not None:
                self.bar.set_postfix_str(what, refresh=False)
                self.bar.update(1)
            else:
                print(f"[{self.done}/{self.total}] {what}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_cases(
    cases: Sequence[Case],
    seeds: Sequence[int],
    out: Path,
    servers: Sequence[str],
    template: dict[str, Any],
    options: Options = Options(),
    *,
    limit: int | None = None,
    timeout: float = 1800.0,
    stop: threading.Event | None = None,
) -> RunReport:
    """Generates every missing image, cases shared among the servers; at most `limit` cases run this time."""
    report = RunReport()
    todo: queue.Queue[Case] = queue.Queue()
    pending = 0
    for case in cases:
        missing = [seed for seed in seeds if not image_path(out, case, seed).is_file()]
        if not missing:
            report.skipped.append(case.name)
        elif limit is None or todo.qsize() < limit:
            todo.put(case)
            pending += len(missing)
    if todo.empty():
        return report
    clients = [ComfyClient(url) for url in servers]
    probe = prepare_graph(template, "probe.png", "probe", 0, OUTPUT_PREFIX, options)
    for client in clients:
        check_server(client, probe)
    stop = stop or threading.Event()
    progress = _Progress(pending)
    lock = threading.Lock()

    def worker(client: ComfyClient) -> None:
        while not stop.is_set():
            try:
                case = todo.get_nowait()
            except queue.Empty:
                return
            try:
                name = client.upload_image(scene_with_alpha(case), f"{OUTPUT_PREFIX}_{case.name}.png")
                for seed in seeds:
                    target = image_path(out, case, seed)
                    if target.is_file() or stop.is_set():
                        continue
                    graph = prepare_graph(template, name, case.prompt, seed, f"{OUTPUT_PREFIX}/{case.name}", options)
                    png = client.run(graph, find_roles(graph).save, timeout)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_suffix(".part")
                    partial.write_bytes(png)
                    partial.replace(target)  # only a complete image counts as done
                    progress.step(f"{case.name} seed {seed}")
                with lock:
                    report.ran.append(case.name)
                    report.by_server.setdefault(client.url, []).append(case.name)
            except Exception as error:  # one case failing must not stop the others; the report lists it
                with lock:
                    report.failed[case.name] = f"{type(error).__name__}: {error}"
                    if isinstance(error, (ServerError, DreamMixInputError)):
                        report.failed[case.name] = str(error)

    threads = [threading.Thread(target=worker, args=(c,), name=c.url, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        print("\nStopping after the images now running; run the same command again to resume.", file=sys.stderr)
        for thread in threads:
            thread.join()
    finally:
        progress.close()
    return report


# --- scoring and the table ----------------------------------------------------------------------


@dataclass
class Table:
    rows: list[tuple[str, int, Any]]
    """(case, images scored, Scores or None)."""
    mean: Any
    notes: list[str]


def _load_models(clip_source: str, dino_source: str, device: str, allow_download: bool) -> tuple[Any, Any, list[str]]:
    from .metrics import cached_metric_model

    loaded, notes = [], []
    for kind, source, columns in (("clip", clip_source, "CLIP-T and CLIP-I"), ("dino", dino_source, "DINO")):
        if not source:
            loaded.append(None)
            notes.append(f"{columns}: not computed (no {kind.upper()} model given).")
            continue
        try:
            loaded.append(cached_metric_model(kind, source, device=device, allow_download=allow_download))
        except DreamMixInputError as error:
            loaded.append(None)
            notes.append(f"{columns}: not computed, the model is not available. {error}")
    return loaded[0], loaded[1], notes


def score_cases(
    cases: Sequence[Case],
    seeds: Sequence[int],
    out: Path,
    clip_source: str,
    dino_source: str,
    *,
    device: str = "cpu",
    allow_download: bool = False,
) -> tuple[Table, list[dict[str, Any]]]:
    """The table (one row per case, metrics averaged over its seeds) and a row per scored image."""
    try:
        from .metrics import clip_t_text, mean_scores, score
    except ImportError as error:  # torch or transformers missing from this python
        return Table([(c.name, 0, None) for c in cases], None, [f"No metrics: {error}."]), []
    clip, dino = (None, None)
    notes: list[str] = []
    if clip_source or dino_source:
        clip, dino, notes = _load_models(clip_source, dino_source, device, allow_download)
    else:
        notes.append("No metrics: no CLIP or DINO model given.")
    rows, per_image, case_scores = [], [], []
    no_refs = [case.name for case in cases if not case.references]
    if no_refs and (clip or dino):
        notes.append(f"CLIP-I and DINO need reference photos; none for: {', '.join(no_refs)}.")
    for case in cases:
        done = [(seed, image_path(out, case, seed)) for seed in seeds if image_path(out, case, seed).is_file()]
        if not done or not (clip or dino):
            rows.append((case.name, len(done), None))
            continue
        clip_t_text(case.prompt, case.class_word)  # a prompt with 'sks' and no class word fails with its message
        references = []
        for path in case.references:
            with Image.open(path) as image:
                references.append(image.convert("RGB"))
        with Image.open(case.mask) as mask_image:
            mask = np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0
        scores = []
        for seed, path in done:
            with Image.open(path) as result:
                result = result.convert("RGB")
            image_scores = score(result, mask, references, case.prompt, case.class_word, clip=clip, dino=dino)
            scores.append(image_scores)
            per_image.append({"case": case.name, "seed": seed, "image": str(path), "scores": image_scores})
        case_mean = mean_scores(scores)
        case_scores.append(case_mean)
        rows.append((case.name, len(done), case_mean))
    mean = mean_scores(case_scores) if case_scores else None
    return Table(rows, mean, notes), per_image


def _cell(scores: Any, column: str, digits: int) -> str:
    if scores is None:
        return ""
    value = {"CLIP-T": scores.clip_t, "CLIP-I": scores.clip_i, "DINO": scores.dino}[column]
    return "" if value is None else f"{value:.{digits}f}"


def table_markdown(table: Table) -> str:
    lines = ["| case | images | CLIP-T | CLIP-I | DINO |", "|---|---|---|---|---|"]
    for name, count, scores in table.rows:
        lines.append(f"| {name} | {count} | " + " | ".join(_cell(scores, c, 3) for c in METRIC_COLUMNS) + " |")
    total = sum(count for _, count, _ in table.rows)
    lines.append(f"| **mean** | {total} | " + " | ".join(_cell(table.mean, c, 3) for c in METRIC_COLUMNS) + " |")
    text = "\n".join(lines) + "\n"
    if table.notes:
        text += "\n" + "\n".join(f"- {note}" for note in table.notes) + "\n"
    return text


def write_results(out: Path, table: Table, per_image: list[dict[str, Any]]) -> None:
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "images", *METRIC_COLUMNS])
        for name, count, scores in table.rows:
            writer.writerow([name, count, *(_cell(scores, c, 4) for c in METRIC_COLUMNS)])
        total = sum(count for _, count, _ in table.rows)
        writer.writerow(["mean", total, *(_cell(table.mean, c, 4) for c in METRIC_COLUMNS)])
    with open(out / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "seed", "image", *METRIC_COLUMNS])
        for row in per_image:
            writer.writerow(
                [row["case"], row["seed"], row["image"], *(_cell(row["scores"], c, 4) for c in METRIC_COLUMNS)]
            )
    header = (
        "# DreamMix batch results\n\nRaw cosine similarities as in the paper's Table 1: CLIP-T (image vs prompt, "
        "'sks' replaced by the class word), CLIP-I and DINO (the mask's bounding box vs each reference photo, "
        "averaged). Each case row averages its seeds; the mean row averages the cases.\n\n"
    )
    (out / "results.md").write_text(header + table_markdown(table))


# --- command line ---------------------------------------------------------------------------------


def _seeds(values: Sequence[str]) -> list[int]:
    seeds = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                seeds.append(int(part))
            except ValueError:
                raise DreamMixInputError(f"--seeds takes whole numbers, not '{part}'.") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise DreamMixInputError("--seeds needs at least one seed, each 0 or more.")
    return list(dict.fromkeys(seeds))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dreammix_core.batch",
        description="Run a DreamMix API workflow over a folder of cases on ComfyUI servers and score the results.",
    )
    parser.add_argument("cases", help="folder of cases: <name>/scene.png, mask.png (white = subject), prompt.txt")
    parser.add_argument("--out", required=True, help="output folder: images/<case>/seed<N>.png, results.csv/.md")
    parser.add_argument("--workflow", default=str(DEFAULT_WORKFLOW), help="API-format workflow (default: %(default)s)")
    parser.add_argument(
        "--server", action="append", default=None, help=f"ComfyUI server address, repeatable (default {DEFAULT_SERVER})"
    )
    parser.add_argument("--seeds", nargs="+", default=["0"], help="seeds, e.g. 0 1 2 or 0,1,2 (default 0)")
    parser.add_argument("--ckpt", help="CheckpointLoaderSimple's ckpt_name")
    parser.add_argument("--lora", help="LoRA file name (models/loras), loaded after the checkpoint")
    parser.add_argument("--lora-strength", type=float, default=1.0)
    parser.add_argument("--lora-model-only", action="store_true", help="LoraLoaderModelOnly: the UNet only")
    parser.add_argument("--steps", type=int, help="override DreamMixInpaint's steps")
    parser.add_argument("--resolution", type=int, help="override DreamMixInpaint's working resolution")
    parser.add_argument("--cfg", type=float, help="override DreamMixInpaint's cfg")
    parser.add_argument("--references", help="reference photos: a folder of images, or of <case>/ folders of them")
    parser.add_argument("--class-word", default="", help="the subject's class word ('dog'); replaces 'sks' for CLIP-T")
    parser.add_argument(
        "--clip-model", default=None, help="CLIP folder or Hub id (default openai/clip-vit-large-patch14)"
    )
    parser.add_argument("--dino-model", default=None, help="DINO folder or Hub id (default facebook/dino-vits16)")
    parser.add_argument("--no-metrics", action="store_true", help="generate only; leave the metric columns empty")
    parser.add_argument("--allow-download", action="store_true", help="let metric models download from the Hub")
    parser.add_argument("--device", default=None, help="device for the metrics (default: cuda if available, else cpu)")
    parser.add_argument("--limit", type=int, help="run at most this many unfinished cases, then stop")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one image may take (default 1800)")
    return parser


def main(argv: Sequence[str] | None = None, print_fn: Callable[..., None] = print) -> int:
    args = build_parser().parse_args(argv)
    try:
        seeds = _seeds(args.seeds)
        if args.limit is not None and args.limit < 1:
            raise DreamMixInputError("--limit must be 1 or more.")
        if args.lora_model_only and not args.lora:
            raise DreamMixInputError("--lora-model-only needs --lora NAME.")
        cases = load_cases(args.cases, args.references, args.class_word)
        template = load_workflow(args.workflow)
        options = Options(
            args.ckpt, args.lora, args.lora_strength, args.lora_model_only, args.steps, args.resolution, args.cfg
        )
        prepare_graph(template, "check.png", "check", seeds[0], OUTPUT_PREFIX, options)  # the options fit the graph
        if not args.no_metrics:
            from .metrics import clip_t_text

            for case in cases:
                try:
                    clip_t_text(case.prompt, case.class_word)
                except DreamMixInputError as error:
                    raise DreamMixInputError(f"{case.folder / 'prompt.txt'}: {error} Use --class-word.") from None
    except DreamMixInputError as error:
        print_fn(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    servers = args.server or [DEFAULT_SERVER]
    try:
        report = run_cases(cases, seeds, out, servers, template, options, limit=args.limit, timeout=args.timeout)
    except (ServerError, DreamMixInputError) as error:
        print_fn(f"error: {error}", file=sys.stderr)
        return 1
    if report.skipped:
        print_fn(f"skipped {len(report.skipped)} finished case(s): {', '.join(report.skipped)}")
    for url, names in report.by_server.items():
        print_fn(f"{url} ran {len(names)} case(s): {', '.join(names)}")
    for name, message in report.failed.items():
        print_fn(f"case {name} failed: {message}", file=sys.stderr)
    if args.no_metrics:
        clip_source = dino_source = ""
    else:
        from .metrics import DEFAULT_CLIP, DEFAULT_DINO

        clip_source, dino_source = args.clip_model or DEFAULT_CLIP, args.dino_model or DEFAULT_DINO
    device = args.device
    if device is None:
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
    try:
        table, per_image = score_cases(
            cases, seeds, out, clip_source, dino_source, device=device, allow_download=args.allow_download
        )
    except DreamMixInputError as error:
        print_fn(f"error while scoring: {error}", file=sys.stderr)
        return 1
    write_results(out, table, per_image)
    print_fn(table_markdown(table))
    print_fn(f"results: {out / 'results.csv'} and {out / 'results.md'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
