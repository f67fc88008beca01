"""The API workflow a batch runs: its roles (inpaint, prompt, scene, save, checkpoint) and per-case copies."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dreammix_core.errors import DreamMixInputError

DEFAULT_WORKFLOW = resources.files(__package__) / "workflows" / "dreammix_inpaint.json"
"""The one-shot API workflow, shipped inside this package so an installed `dreammix-batch` finds it."""


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
            f"'Export (API)', or use one shipped in dreammix_batch/workflows/."
        )
    find_roles(graph, f"the workflow '{path}'")
    return graph


def _add_lora(graph: dict[str, Any], checkpoint: str | None, options: Options) -> None:
    """Sets the workflow's LoRA loaders, or inserts one after the checkpoint loader and rewires its consumers."""
    loaders = [n for n in graph.values() if n["class_type"] in ("LoraLoader", "LoraLoaderModelOnly")]
    if loaders:
        for node in loaders:
            node["inputs"]["lora_name"] = options.lora
            node["inputs"]["strength_model"] = options.lora_strength
            if "strength_clip" in node["inputs"]:
                node["inputs"]["strength_clip"] = options.lora_strength
        return
    if checkpoint is None:
        raise DreamMixInputError(
            "--lora needs a workflow with a LoRA loader or exactly one CheckpointLoaderSimple node to add one after."
        )
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
    if options.ckpt and roles.checkpoint is None:
        raise DreamMixInputError("--ckpt needs a workflow with exactly one CheckpointLoaderSimple node.")
    if options.ckpt:
        graph[roles.checkpoint]["inputs"]["ckpt_name"] = options.ckpt
    if options.lora:
        _add_lora(graph, roles.checkpoint, options)
    return graph
