"""The pack's import graph, built by grimp (import-linter's engine) from the source, not from a list.

Layers, top to bottom: the pack's entry point, `nodes` (ComfyUI adapters) and `dreammix_batch`
(a ComfyUI client), then `dreammix_core` (the method, no host). Inside the core the paper's parts
sit over the shared rules (errors, masks, paths, model sources, the model cache), and there is no cycle anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import grimp
import pytest

PACK = "dreammix_pack"
ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("comfy", "comfy_api", "comfy_extras", "folder_paths", "node_helpers", "latent_preview", "server")


@pytest.fixture(scope="module")
def graph(tmp_path_factory, monkeypatch_module):
    """The pack imported under one package name, as ComfyUI imports it (its folder as a package)."""
    folder = tmp_path_factory.mktemp("graph")
    os.symlink(ROOT, folder / PACK, target_is_directory=True)
    monkeypatch_module.syspath_prepend(str(folder))
    return grimp.build_graph(PACK, include_external_packages=True, cache_dir=None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _illegal(graph, layers, container) -> list[str]:
    found = graph.find_illegal_dependencies_for_layers(layers=layers, containers={container})
    return sorted(f"{d.importer} -> {d.imported}" for d in found)


def test_the_pack_is_layered_entry_nodes_core(graph) -> None:
    layers = (grimp.Layer("nodes", "dreammix_batch", independent=True), "dreammix_core")
    assert _illegal(graph, layers, PACK) == []


CORE_LAYERS = (
    grimp.Layer("evaluation", "training", independent=True),
    grimp.Layer("attributes", "inpainting", independent=True),
    grimp.Layer("masks", "families", "paths", "model_source", "model_cache", independent=True),
    grimp.Layer("errors"),
)
"""The core's parts, top to bottom: the paper's parts over the shared rules over the error type."""


def test_the_core_reads_like_the_paper_over_shared_rules(graph) -> None:
    assert _illegal(graph, CORE_LAYERS, f"{PACK}.dreammix_core") == []


def test_every_core_module_sits_in_a_layer(graph) -> None:
    """A module added to the core outside the layers would escape the contract above."""
    core = f"{PACK}.dreammix_core"
    parts = {m.removeprefix(core + ".").split(".")[0] for m in graph.modules if m.startswith(core + ".")}
    assert parts == {name for layer in CORE_LAYERS for name in layer.module_tails}


def test_the_core_imports_no_host(graph) -> None:
    core = {m for m in graph.modules if m.startswith(f"{PACK}.dreammix_core")}
    imported = {(m, i) for m in core for i in graph.find_modules_directly_imported_by(m)}
    assert sorted((m, i) for m, i in imported if i.split(".")[0] in HOSTS) == []


def test_no_import_cycle(graph) -> None:
    internal = {m for m in graph.modules if m.startswith(PACK)}
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in internal} for m in internal}
    # a module imports its package's __init__ implicitly; only the explicit graph counts
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(internal):
        if module not in state:
            visit(module, [module])
    assert cycles == []
