"""Several results per run (ComfyUI tier): variations on the one-shot node and through the granular chain, and a
batch of scenes on the one-shot node. Every result keeps its own scene's background exact."""

from __future__ import annotations

import numpy as np
from server import ComfyServer
from test_workflows import (
    SIZE,
    assert_background_exact,
    id_of,
    prepared_graph,
    scene,
    subject_mask,
    with_alpha,
)

VARIATIONS = 2
RESOLUTION = 64
"""LCG at 64², so the 320x240 scene is also over the GCH budget: the batch runs through the window too (and costs
a quarter of the shipped test resolution's LCG)."""


def at_test_resolution(graph: dict) -> dict:
    for node in graph.values():
        if "resolution" in node["inputs"]:
            node["inputs"]["resolution"] = RESOLUTION
    return graph


def differ_inside(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> bool:
    return bool(np.abs(first[mask].astype(int) - second[mask].astype(int)).mean() > 2)


def test_a_batch_of_scenes_gives_each_scene_its_variations(comfy_server: ComfyServer) -> None:
    """Two scenes (the test scene and its mirror image) with one mask for both, 2 variations: 4 images, scene by
    scene, each exact outside mask + feather against its own scene. Their crops share a size, so they run in one
    sampler call per stage, and the second scene's images are what it gives alone (up to batched rounding)."""
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    first = comfy_server.upload_image(with_alpha(rgb, mask), "dreammix_scenes_0.png")
    second = comfy_server.upload_image(mirrored, "dreammix_scenes_1.png")
    graph = at_test_resolution(prepared_graph("dreammix_inpaint", "tiny_sd15", first, "scenes"))
    load = id_of(graph, "LoadImage")
    graph["second"] = {"class_type": "LoadImage", "inputs": {"image": second}}
    graph["scenes"] = {"class_type": "ImageBatch", "inputs": {"image1": [load, 0], "image2": ["second", 0]}}
    inpaint = graph[id_of(graph, "DreamMixInpaint")]["inputs"]
    # euler: SDE samplers (the workflow's) draw their extra noise per batch, so only their first noise is per scene
    inpaint.update(image=["scenes", 0], variations=VARIATIONS, sampler_name="euler")
    images = comfy_server.output_images(comfy_server.run(graph), id_of(graph, "SaveImage"))
    assert len(images) == 2 * VARIATIONS
    for index, result in enumerate(images):
        assert_background_exact(result, (rgb, mirrored)[index // VARIATIONS], mask)
    assert differ_inside(images[0], images[1], mask) and differ_inside(images[2], images[3], mask)
    inpaint["image"] = ["second", 0]
    alone = comfy_server.output_images(comfy_server.run(graph), id_of(graph, "SaveImage"))
    for grouped, single in zip(images[VARIATIONS:], alone, strict=True):
        difference = np.abs(grouped.astype(int) - single.astype(int))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_variations_run_through_the_granular_chain(comfy_server: ComfyServer) -> None:
    """The LCG Sampler's variations travel through Local Replace, the GCH Sampler and Composite: 2 results."""
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    image = comfy_server.upload_image(with_alpha(rgb, mask), "dreammix_granular_variations.png")
    graph = at_test_resolution(prepared_graph("dreammix_inpaint_granular", "tiny_sd15", image, "granular_variations"))
    graph[id_of(graph, "DreamMixLocalSampler")]["inputs"]["variations"] = VARIATIONS
    entry = comfy_server.run(graph)
    images = comfy_server.output_images(entry, id_of(graph, "SaveImage"))
    assert len(images) == VARIATIONS
    for result in images:
        assert_background_exact(result, rgb, mask)
    assert differ_inside(images[0], images[1], mask)
    replace = id_of(graph, "DreamMixLocalReplace")
    (preview,) = (nid for nid, node in graph.items() if node["inputs"].get("images") == [replace, 1])
    assert len(comfy_server.output_images(entry, preview)) == VARIATIONS  # one composite per variation
