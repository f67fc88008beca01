"""Check UI-format workflows against a server's /object_info, the way ComfyUI's frontend reads them.

The frontend gives every node its socket inputs first, then one input per widget, both in
`input_order` (required, then optional); `widgets_values` holds one value per widget, plus
the companion widgets the frontend adds itself: the control_after_generate combo after a
seed, and the upload button after an image_upload combo. `ui_to_api` is what its
graphToPrompt sends to /prompt for such a workflow, without the `_meta` titles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Workflow = dict[str, Any]
ObjectInfo = dict[str, Any]

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote"})
"""Nodes the frontend draws but never sends to the server, so /object_info does not list them."""
CONTROL = "CONTROL_AFTER_GENERATE"
UPLOAD = "IMAGEUPLOAD"
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
USER_FILE_COMBOS = frozenset(
    {
        ("CheckpointLoaderSimple", "ckpt_name"),
        ("LoadImage", "image"),
        ("UNETLoader", "unet_name"),
        ("DualCLIPLoader", "clip_name1"),
        ("DualCLIPLoader", "clip_name2"),
        ("CLIPLoader", "clip_name"),
        ("VAELoader", "vae_name"),
        ("LoraLoaderModelOnly", "lora_name"),
    }
)
"""Combos naming the user's own files: a shared workflow names files the test server lacks."""


@dataclass(frozen=True)
class Widget:
    """One entry of `widgets_values`: the input it sets (None for companion widgets) and its rules."""

    name: str | None
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    choices: tuple[Any, ...] = ()


def _spec_parts(spec: list[Any]) -> tuple[str, dict[str, Any], tuple[Any, ...]]:
    """(type, options, combo choices) of one /object_info input spec, old or V3 combo style."""
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return "COMBO", options, tuple(spec[0])
    return spec[0], options, tuple(options.get("options", ()))


def ordered_inputs(info: dict[str, Any]) -> list[tuple[str, list[Any], bool]]:
    """(name, spec, optional) of a node's inputs in the frontend's order; hidden ones are not slots."""
    return [
        (name, info["input"][section][name], section == "optional")
        for section in ("required", "optional")
        for name in info["input_order"].get(section, [])
    ]


def is_widget(spec: list[Any]) -> bool:
    kind, options, _ = _spec_parts(spec)
    return kind in WIDGET_TYPES and not options.get("forceInput")


def widgets(info: dict[str, Any]) -> list[Widget]:
    """The node's widgets in `widgets_values` order."""
    found = []
    for name, spec, _ in ordered_inputs(info):
        if not is_widget(spec):
            continue
        kind, options, choices = _spec_parts(spec)
        found.append(Widget(name, kind, options, choices))
        if options.get("control_after_generate"):
            found.append(Widget(None, CONTROL))
        if options.get("image_upload"):
            found.append(Widget(None, UPLOAD))
    return found


def input_slots(info: dict[str, Any]) -> list[str]:
    """Names of the node's input slots as the frontend lays them out: sockets, then widgets."""
    inputs = ordered_inputs(info)
    slots = [name for name, spec, _ in inputs if not is_widget(spec)]
    for name, spec, _ in inputs:
        if is_widget(spec):
            slots.append(name)
            if _spec_parts(spec)[1].get("image_upload"):
                slots.append("upload")
    return slots


def value_problem(node_type: str, widget: Widget, value: Any) -> str | None:
    """Why `value` cannot be this widget's value, or None if it can."""
    options = widget.options
    if widget.kind == CONTROL:
        return None if value in CONTROL_VALUES else f"control_after_generate value {value!r}"
    if widget.kind == UPLOAD:
        return None if value == "image" else f"upload widget value {value!r}, expected 'image'"
    if widget.kind == "COMBO":
        if (node_type, widget.name) in USER_FILE_COMBOS:
            return None if isinstance(value, str) and value else f"{widget.name}: no file name"
        return None if value in widget.choices else f"{widget.name}: {value!r} is not one of its options"
    expected = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool}[widget.kind]
    if isinstance(value, bool) != (widget.kind == "BOOLEAN") or not isinstance(value, expected):
        return f"{widget.name}: {value!r} is not {widget.kind}"
    if widget.kind in ("INT", "FLOAT") and not options.get("min", value) <= value <= options.get("max", value):
        return f"{widget.name}: {value!r} outside [{options.get('min')}, {options.get('max')}]"
    return None


def widget_problems(node: dict[str, Any], info: dict[str, Any]) -> list[str]:
    expected = widgets(info)
    values = node.get("widgets_values", [])
    if len(values) != len(expected):
        names = [w.name or w.kind for w in expected]
        return [f"{len(values)} widgets_values for {len(expected)} widgets {names}"]
    return [p for w, v in zip(expected, values) if (p := value_problem(node["type"], w, v))]


def _link_problems(link: list[Any], nodes: dict[int, dict[str, Any]]) -> list[str]:
    """A link must be listed by the output it leaves and the input it enters, with their type."""
    link_id, src, src_slot, dst, dst_slot, kind = link
    if src not in nodes or dst not in nodes:
        return [f"link {link_id} joins missing nodes {src} -> {dst}"]
    outputs, inputs = nodes[src]["outputs"], nodes[dst]["inputs"]
    if src_slot >= len(outputs) or link_id not in (outputs[src_slot].get("links") or []):
        return [f"link {link_id} is not listed on output {src_slot} of node {src}"]
    if dst_slot >= len(inputs) or inputs[dst_slot].get("link") != link_id:
        return [f"link {link_id} is not the link of input {dst_slot} of node {dst}"]
    types = {outputs[src_slot]["type"], inputs[dst_slot]["type"], kind}
    return [] if len(types) == 1 else [f"link {link_id} joins types {sorted(types)}"]


def _node_slot_problems(node: dict[str, Any], info: dict[str, Any], link_ids: set[int]) -> list[str]:
    """Slots named and typed as the node's definition makes them, every required socket linked."""
    where = f"node {node['id']} ({node['type']})"
    problems = []
    names = [entry["name"] for entry in node["inputs"]]
    if names != input_slots(info):
        problems.append(f"{where}: inputs {names}, the frontend makes {input_slots(info)}")
    outputs = [(entry["name"], entry["type"]) for entry in node["outputs"]]
    defined = list(zip(info["output_name"], info["output"]))
    # A workflow saved before a node gained an output (SaveImage's IMAGE in ComfyUI 0.2x) lists fewer;
    # the frontend adds the new slots, so the saved ones need only be the definition's first ones.
    if outputs != defined[: len(outputs)]:
        problems.append(f"{where}: outputs {outputs}, the node defines {defined}")
    linked = {entry["name"] for entry in node["inputs"] if entry.get("link") is not None}
    for name, spec, optional in ordered_inputs(info):
        if not optional and not is_widget(spec) and name not in linked:
            problems.append(f"{where}: required input {name} is not connected")
    dangling = {entry.get("link") for entry in node["inputs"]} - link_ids - {None}
    dangling |= {i for entry in node["outputs"] for i in entry.get("links") or []} - link_ids
    if dangling:
        problems.append(f"{where}: refers to links {sorted(dangling)} that do not exist")
    return problems


def wiring_problems(workflow: Workflow, object_info: ObjectInfo) -> list[str]:
    """Everything the frontend relies on when it loads the graph: ids, slots, links, types."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    problems = [] if len(nodes) == len(workflow["nodes"]) else ["duplicate node ids"]
    link_ids = {link[0] for link in workflow["links"]}
    if workflow["last_node_id"] < max(nodes) or workflow["last_link_id"] < max(link_ids, default=0):
        problems.append("last_node_id / last_link_id below an id in use")
    for link in workflow["links"]:
        problems += _link_problems(link, nodes)
    for node in workflow["nodes"]:
        if node["type"] in object_info:
            problems += _node_slot_problems(node, object_info[node["type"]], link_ids)
    return problems


def ui_to_api(workflow: Workflow, object_info: ObjectInfo) -> dict[str, Any]:
    """The /prompt graph the frontend queues for this workflow (frontend-only and muted nodes left out)."""
    links = {link[0]: link for link in workflow["links"]}
    graph = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) != 0:
            continue
        values = iter(node.get("widgets_values", []))
        inputs = {w.name: value for w, value in zip(widgets(object_info[node["type"]]), values) if w.name}
        for entry in node["inputs"]:
            if entry.get("link") is not None:
                _, src, src_slot, *_ = links[entry["link"]]
                inputs[entry["name"]] = [str(src), src_slot]
        graph[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return graph


def outputs_reached(graph: dict[str, Any], object_info: ObjectInfo) -> set[str]:
    """Ids of the API nodes ComfyUI executes: output nodes and everything they depend on."""
    todo = [nid for nid, node in graph.items() if object_info[node["class_type"]]["output_node"]]
    reached: set[str] = set()
    while todo:
        nid = todo.pop()
        if nid not in reached:
            reached.add(nid)
            todo += [value[0] for value in graph[nid]["inputs"].values() if isinstance(value, list)]
    return reached
