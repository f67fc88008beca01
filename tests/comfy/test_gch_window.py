"""GCH on a window of a scene over its pixel budget, through the shipped inpaint workflows (ComfyUI tier).

At resolution 64 LCG works at 64x64, so the 320x240 test scene is 18.75 working areas, over the shipped
budget of 4. By hand: the mask spans x 180..308, y 60..130 (test_workflows.subject_mask); with the 32 px
feather GCH needs x 148..320, y 28..162 (172x134), so the window takes 192x192 (multiples of 64, the need
outgrowing the 128x128 budget square), centred at x 138, y -1 and shifted inside the scene: (128, 0)-(320, 192).
"""

from __future__ import annotations

import numpy as np
from server import ComfyServer
from test_workflows import (
    FEATHER,
    SIZE,
    assert_background_exact,
    far_from,
    id_of,
    prepared_graph,
    scene,
    subject_mask,
    with_alpha,
)

WINDOW_RESOLUTION = 64
LEFT, TOP, RIGHT, BOTTOM = 128, 0, 320, 192


def run_at_window_resolution(server: ComfyServer, workflow: str, image: str) -> tuple[dict, dict]:
    graph = prepared_graph(workflow, "tiny_sd15", image, f"window_{workflow}")
    for node in graph.values():
        if "resolution" in node["inputs"]:
            node["inputs"]["resolution"] = WINDOW_RESOLUTION
    entry = server.run(graph)
    return graph, {nid: server.output_images(entry, nid)[0] for nid in entry["outputs"]}


def test_a_scene_over_the_budget_is_harmonised_on_a_window_and_both_paths_agree(comfy_server: ComfyServer) -> None:
    """The one-shot node, the shipped granular chain, and that chain with nothing but the scene record passed from
    Local Crop (no image, mask or feather wired again) give one result."""
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    image = comfy_server.upload_image(with_alpha(rgb, mask), "dreammix_window.png")
    one_shot_graph, one_shot = run_at_window_resolution(comfy_server, "dreammix_inpaint", image)
    graph, granular = run_at_window_resolution(comfy_server, "dreammix_inpaint_granular", image)
    result = one_shot[id_of(one_shot_graph, "SaveImage")]
    assert_background_exact(result, rgb, mask)
    np.testing.assert_array_equal(granular[id_of(graph, "SaveImage")], result)

    # Local Crop's scene record alone carries image, mask, feather and window to Local Replace and Composite.
    for kind in ("DreamMixLocalReplace", "DreamMixComposite"):
        for name in ("image", "mask", "feather"):
            del graph[id_of(graph, kind)]["inputs"][name]
    graph[id_of(graph, "SaveImage")]["inputs"]["filename_prefix"] = "window_record_only"
    record_only = comfy_server.run(graph)
    np.testing.assert_array_equal(comfy_server.output_images(record_only, id_of(graph, "SaveImage"))[0], result)

    replace = id_of(graph, "DreamMixLocalReplace")
    (preview,) = (image for nid, image in granular.items() if graph[nid]["inputs"].get("images") == [replace, 1])
    assert preview.shape == (BOTTOM - TOP, RIGHT - LEFT, 3)  # GCH's input: the window, not the scene
    window = (slice(TOP, BOTTOM), slice(LEFT, RIGHT))
    far = far_from(mask, FEATHER)[window]
    np.testing.assert_array_equal(preview[far], rgb[window][far])  # at the scene's own pixel scale
