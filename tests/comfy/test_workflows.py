"""The shipped workflows: they load in ComfyUI's frontend, and their API twins run through the server.

Static tests check every shipped UI workflow against the running server's /object_info (what the
frontend builds its nodes from) and its API twin. Run tests queue the inpaint API twins on the tiny random-weight
checkpoints, with a non-square scene whose alpha channel is the mask, and check that every
pixel beyond mask + feather comes back bit for bit.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import save_file
from server import ComfyServer, ExecutionFailed
from workflow_format import (
    FRONTEND_ONLY,
    ObjectInfo,
    outputs_reached,
    ui_to_api,
    widget_problems,
    widgets,
    wiring_problems,
)

PACK_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = PACK_ROOT / "example_workflows"
"""The UI workflows ComfyUI lists as the pack's templates."""
API_WORKFLOWS = PACK_ROOT / "dreammix_batch" / "workflows"
"""Their API-format twins, shipped with the batch runner."""
NAMES = ("dreammix_inpaint", "dreammix_inpaint_granular")
"""The inpaint workflows, run here; the attribute and training workflows have their own run tests."""
SHIPPED = tuple(sorted(path.stem for path in WORKFLOWS.glob("*.json")))
PACK_MODULE = "custom_nodes.ComfyUI-DreamMix"
INPAINT_CATEGORY = "DreamMix/inpaint"
STEPS = 4
RESOLUTION = 256
FEATHER = 32
SIZE = (320, 240)
ODD_SIZE = (250, 190)


def load_ui(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def load_api(name: str) -> dict[str, Any]:
    return json.loads((API_WORKFLOWS / f"{name}.json").read_text())


def api_without_meta(name: str) -> dict[str, Any]:
    """The API twin as the frontend's graphToPrompt sends it: no `_meta` titles."""
    return {nid: {"class_type": node["class_type"], "inputs": node["inputs"]} for nid, node in load_api(name).items()}


@pytest.fixture(scope="module")
def object_info(comfy_server: ComfyServer) -> ObjectInfo:
    return comfy_server.object_info()


# --- static: every shipped UI workflow loads in the frontend and matches its API twin -----------


def test_every_ui_workflow_has_an_api_twin() -> None:
    assert {"dreammix_attribute_edit", "dreammix_train_subject", *NAMES} <= set(SHIPPED)
    assert SHIPPED == tuple(sorted(path.stem for path in API_WORKFLOWS.glob("*.json")))


@pytest.mark.parametrize("name", SHIPPED)
def test_ui_workflow_uses_only_known_nodes(name: str, object_info: ObjectInfo) -> None:
    missing = {node["type"] for node in load_ui(name)["nodes"]} - set(object_info) - FRONTEND_ONLY
    assert not missing, f"the frontend would report missing nodes: {sorted(missing)}"


def skip_if_newer_than_this_comfyui(name: str, object_info: ObjectInfo) -> None:
    """A workflow for a text encoder this ComfyUI predates (FLUX.2 Klein's Load CLIP type flux2 arrived in v0.33)
    names a choice its loader does not offer here: it is checked on the ComfyUI that has it."""
    offered = next(w.choices for w in widgets(object_info["CLIPLoader"]) if w.name == "type")
    for node in load_ui(name)["nodes"]:
        if node["type"] == "CLIPLoader" and node["widgets_values"][1] not in offered:
            pytest.skip(f"{name} needs Load CLIP type {node['widgets_values'][1]}, which this ComfyUI lacks (v0.33 on)")


@pytest.mark.parametrize("name", SHIPPED)
def test_ui_widgets_values_match_widget_inputs(name: str, object_info: ObjectInfo) -> None:
    skip_if_newer_than_this_comfyui(name, object_info)
    problems = {
        node["id"]: widget_problems(node, object_info[node["type"]])
        for node in load_ui(name)["nodes"]
        if node["type"] in object_info
    }
    assert not any(problems.values()), {nid: p for nid, p in problems.items() if p}


@pytest.mark.parametrize("name", SHIPPED)
def test_ui_workflow_is_wired_as_the_frontend_lays_out_nodes(name: str, object_info: ObjectInfo) -> None:
    assert wiring_problems(load_ui(name), object_info) == []


@pytest.mark.parametrize("name", SHIPPED)
def test_api_twin_is_what_the_frontend_queues(name: str, object_info: ObjectInfo) -> None:
    assert ui_to_api(load_ui(name), object_info) == api_without_meta(name)


def test_the_template_browser_lists_and_serves_every_shipped_workflow(comfy_server: ComfyServer) -> None:
    """ComfyUI's template browser lists the pack's example_workflows (the Qwen-Image and Z-Image ones among them) and
    serves each file as shipped."""
    pack = comfy_server.layout.pack_link.name
    assert sorted(comfy_server.workflow_templates()[pack]) == list(SHIPPED)
    assert {"dreammix_qwen_image_inpaint", "dreammix_z_image_train_subject"} <= set(SHIPPED)
    for name in SHIPPED:
        assert comfy_server.workflow_template(pack, name) == load_ui(name)


def test_checks_catch_a_broken_workflow(object_info: ObjectInfo) -> None:
    """The checks above fail on the mistakes hand-edited workflows make: a lost seed control, a shifted link."""
    workflow = load_ui("dreammix_inpaint")
    inpaint = next(node for node in workflow["nodes"] if node["type"] == "DreamMixInpaint")
    inpaint["widgets_values"].remove("fixed")
    workflow["links"][0][4] += 1
    assert widget_problems(inpaint, object_info["DreamMixInpaint"])
    assert wiring_problems(workflow, object_info)


def test_workflows_execute_every_inpaint_node(object_info: ObjectInfo) -> None:
    """Each run test executes its whole graph, so together they run every inpaint node the pack registers."""
    pack_nodes = {
        name
        for name, info in object_info.items()
        if info["python_module"] == PACK_MODULE and info["category"] == INPAINT_CATEGORY
    }
    covered = set()
    for name in NAMES:
        graph = load_api(name)
        assert outputs_reached(graph, object_info) == set(graph), f"{name} has nodes no output depends on"
        covered |= {node["class_type"] for node in graph.values()}
    assert pack_nodes and pack_nodes <= covered, f"not in any workflow: {sorted(pack_nodes - covered)}"


# --- the scene, its mask, and the exactness check --------------------------------------------


def scene(width: int, height: int) -> np.ndarray:
    """A textured RGB scene (gradients plus seeded noise), so a wrong pixel anywhere shows."""
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    noise = np.random.default_rng(width * height).integers(0, 40, (height, width, 3))
    rgb = np.stack([200 * x, 200 * y, 120 + 60 * x * y], axis=-1) + noise
    return rgb.clip(0, 255).astype(np.uint8)


def subject_mask(width: int, height: int) -> np.ndarray:
    """An off-centre box near the right edge, so the crop box and the feather meet the border."""
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 4 : height // 2 + 10, width // 2 + 20 : width - 12] = True
    return mask


def with_alpha(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA whose alpha is 0 on the mask: LoadImage's MASK output is 1 - alpha."""
    return np.dstack([rgb, np.where(mask, 0, 255).astype(np.uint8)])


def far_from(mask: np.ndarray, distance: int) -> np.ndarray:
    """Pixels at chessboard distance `distance` or more from every masked pixel."""
    reach = distance - 1
    near = np.pad(mask, reach)
    near = sliding_window_view(near, 2 * reach + 1, axis=0).any(-1)
    near = sliding_window_view(near, 2 * reach + 1, axis=1).any(-1)
    return ~near


def assert_background_exact(result: np.ndarray, rgb: np.ndarray, mask: np.ndarray) -> None:
    assert result.shape == rgb.shape and result.dtype == np.uint8
    far = far_from(mask, FEATHER)
    wrong = np.argwhere((result != rgb).any(-1) & far)
    assert wrong.size == 0, f"{len(wrong)} pixels beyond mask + feather changed, e.g. (y, x) {wrong[:5].tolist()}"
    assert (result[mask] != rgb[mask]).any(), "nothing was generated inside the mask"


# --- running the API twins -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    workflow: str
    ckpt: str
    size: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.workflow}-{self.ckpt}-{self.size[0]}x{self.size[1]}"


def nodes_of(graph: dict[str, Any], class_type: str) -> list[dict[str, Any]]:
    return [node for node in graph.values() if node["class_type"] == class_type]


def id_of(graph: dict[str, Any], class_type: str) -> str:
    (nid,) = [nid for nid, node in graph.items() if node["class_type"] == class_type]
    return nid


def prepared_graph(name: str, ckpt: str, image: str, prefix: str) -> dict[str, Any]:
    """The API twin on a test checkpoint and image, with few steps at a small working size."""
    graph = copy.deepcopy(load_api(name))
    for node in nodes_of(graph, "CheckpointLoaderSimple"):
        node["inputs"]["ckpt_name"] = f"{ckpt}.safetensors"
    for node in nodes_of(graph, "LoadImage"):
        node["inputs"]["image"] = image
    for node in nodes_of(graph, "SaveImage"):
        node["inputs"]["filename_prefix"] = prefix
    for node in graph.values():
        inputs = node["inputs"]
        if "steps" in inputs:
            inputs["steps"] = STEPS
        if "resolution" in inputs:
            inputs["resolution"] = RESOLUTION
    return graph


def cached_nodes(entry: dict[str, Any]) -> set[str]:
    """Node ids ComfyUI served from its cache instead of executing."""
    return {nid for event, data in entry["status"]["messages"] if event == "execution_cached" for nid in data["nodes"]}


def saved_image(server: ComfyServer, entry: dict[str, Any], graph: dict[str, Any]) -> np.ndarray:
    (image,) = server.output_images(entry, id_of(graph, "SaveImage"))
    return image


@dataclass(frozen=True)
class RunResult:
    graph: dict[str, Any]
    entry: dict[str, Any]
    images: dict[str, np.ndarray]
    """First image of each output node, by node id."""


class Runs:
    """Runs each case once per session: the exactness, preview and equivalence tests share them."""

    def __init__(self, server: ComfyServer) -> None:
        self.server = server
        self.done: dict[Case, RunResult] = {}

    def get(self, case: Case) -> RunResult:
        if case not in self.done:
            self.done[case] = self._run(case)
        return self.done[case]

    def _run(self, case: Case) -> RunResult:
        """Uploads under a name of its own, so no pack node is served from an earlier case's cache."""
        rgb, mask = scene(*case.size), subject_mask(*case.size)
        image = self.server.upload_image(with_alpha(rgb, mask), f"{case}.png")
        graph = prepared_graph(case.workflow, case.ckpt, image, str(case))
        entry = self.server.run(graph)
        images = {nid: self.server.output_images(entry, nid)[0] for nid in entry["outputs"]}
        return RunResult(graph, entry, images)


@pytest.fixture(scope="module")
def runs(comfy_server: ComfyServer) -> Runs:
    return Runs(comfy_server)


def check_run(case: Case, runs: Runs, object_info: ObjectInfo) -> None:
    """The saved image is the input outside mask + feather, and every pack node really executed."""
    result = runs.get(case)
    assert_background_exact(
        result.images[id_of(result.graph, "SaveImage")], scene(*case.size), subject_mask(*case.size)
    )
    pack_ids = {
        nid for nid, node in result.graph.items() if object_info[node["class_type"]]["python_module"] == PACK_MODULE
    }
    assert pack_ids, "no pack node in the workflow"
    assert not pack_ids & cached_nodes(result.entry), "a pack node was served from the cache, not executed"


# Grouped by checkpoint, as ComfyUI reloads the model whenever it changes. Each checkpoint runs
# both workflows on one image, so the equivalence test below needs no extra run.
SD15_CASES = [
    Case("dreammix_inpaint", "tiny_sd15", SIZE),
    Case("dreammix_inpaint_granular", "tiny_sd15", SIZE),
    Case("dreammix_inpaint", "tiny_sd15_inpaint", ODD_SIZE),
    Case("dreammix_inpaint_granular", "tiny_sd15_inpaint", ODD_SIZE),
]
SDXL_CASES = [  # one run per SDXL checkpoint: each costs several SD1.5 runs of CPU time
    Case("dreammix_inpaint", "tiny_sdxl_inpaint", SIZE),
    Case("dreammix_inpaint_granular", "tiny_sdxl", ODD_SIZE),
]


COVERING_CASES = (SD15_CASES[1], SD15_CASES[2])
"""The granular chain on the ordinary model and the one-shot node on the 9-channel one at the odd size: every
inpaint node, both model kinds, both pad paths. Older ComfyUI checkouts (compat scope) and the fp16-intermediates
server run these; the other two only show that the granular chain is the one-shot node, which no ComfyUI version
changes."""


def by_scope(cases: list[Case]) -> list[Any]:
    return [case if case in COVERING_CASES else pytest.param(case, marks=pytest.mark.newest_only) for case in cases]


@pytest.mark.parametrize("case", by_scope(SD15_CASES), ids=str)
def test_api_workflow_keeps_background_exact(case: Case, runs: Runs, object_info: ObjectInfo) -> None:
    check_run(case, runs, object_info)


@pytest.mark.parametrize("case", by_scope([case for case in SD15_CASES if "granular" in case.workflow]), ids=str)
def test_granular_previews(case: Case, runs: Runs) -> None:
    """The local crop is at the working size; the LCG paste already leaves the background exact."""
    result = runs.get(case)
    previews = {
        result.graph[nid]["inputs"]["images"][0]: image
        for nid, image in result.images.items()
        if result.graph[nid]["class_type"] == "PreviewImage"
    }
    crop = previews[id_of(result.graph, "DreamMixLocalCrop")]
    assert crop.shape[0] % 64 == 0 and crop.shape[1] % 64 == 0
    assert abs(crop.shape[0] * crop.shape[1] / RESOLUTION**2 - 1) < 0.3
    assert_background_exact(
        previews[id_of(result.graph, "DreamMixLocalReplace")], scene(*case.size), subject_mask(*case.size)
    )


@pytest.mark.newest_only  # a property of the pack's two paths, not of the ComfyUI version
@pytest.mark.parametrize("ckpt", ["tiny_sd15", "tiny_sd15_inpaint"])
def test_granular_workflow_reproduces_the_one_shot_node(ckpt: str, runs: Runs) -> None:
    """Same seed, steps, switch, resolution and feather: the node chain is the one-shot node, pixel for pixel."""
    one_shot, granular = (
        next(runs.get(case) for case in SD15_CASES if case.workflow == name and case.ckpt == ckpt) for name in NAMES
    )
    np.testing.assert_array_equal(
        one_shot.images[id_of(one_shot.graph, "SaveImage")], granular.images[id_of(granular.graph, "SaveImage")]
    )


def with_mask_image(graph: dict[str, Any], mask_name: str) -> dict[str, Any]:
    """The Note's alternative: every MASK taken from LoadImage comes from a LoadImageMask instead."""
    load_image = id_of(graph, "LoadImage")
    graph["mask"] = {"class_type": "LoadImageMask", "inputs": {"image": mask_name, "channel": "red"}}
    for node in graph.values():
        for name, value in node["inputs"].items():
            if value == [load_image, 1]:
                node["inputs"][name] = ["mask", 0]
    return graph


@pytest.mark.newest_only  # LoadImageMask feeding the same nodes: nothing about it differs between versions
def test_mask_image_alternative_from_the_note(comfy_server: ComfyServer, runs: Runs) -> None:
    """An RGB scene plus a white-on-black mask through LoadImageMask gives what the alpha mask gives."""
    case = SD15_CASES[0]
    rgb, mask = scene(*case.size), subject_mask(*case.size)
    image = comfy_server.upload_image(rgb, "dreammix_rgb.png")
    mask_name = comfy_server.upload_image(np.where(mask, 255, 0).astype(np.uint8), "dreammix_mask.png")
    graph = with_mask_image(prepared_graph(case.workflow, case.ckpt, image, "mask_image"), mask_name)
    from_alpha = runs.get(case)
    np.testing.assert_array_equal(
        saved_image(comfy_server, comfy_server.run(graph), graph),
        from_alpha.images[id_of(from_alpha.graph, "SaveImage")],
    )


# --- bad input comes back as a clear message -------------------------------------------------


def failure(server: ComfyServer, graph: dict[str, Any]) -> ExecutionFailed:
    with pytest.raises(ExecutionFailed) as raised:
        server.run(graph)
    return raised.value


def node_refusal(server: ComfyServer, graph: dict[str, Any], node_type: str) -> str:
    """The message `node_type` stops the run with: a DreamMixInputError, whose text ComfyUI shows as it is, followed by
    a newline and its tips for the error (none for these)."""
    error = failure(server, graph)
    assert error.node_type == node_type and error.exception_type.endswith("DreamMixInputError"), str(error)
    assert error.exception_message.endswith("\n"), repr(error.exception_message)
    return error.exception_message.removesuffix("\n")


@pytest.mark.parametrize("name", NAMES)
def test_opaque_alpha_reports_empty_mask(name: str, comfy_server: ComfyServer) -> None:
    rgb = scene(*SIZE)
    image = comfy_server.upload_image(with_alpha(rgb, np.zeros(rgb.shape[:2], dtype=bool)), "dreammix_opaque.png")
    error = failure(comfy_server, prepared_graph(name, "tiny_sd15", image, "empty"))
    assert error.node_type in ("DreamMixInpaint", "DreamMixLocalCrop")
    assert "mask is empty" in error.exception_message


def test_transposed_mask_reports_size_mismatch(comfy_server: ComfyServer) -> None:
    """A non-square scene with a mask of swapped width and height is refused, naming both sizes."""
    width, height = SIZE
    image = comfy_server.upload_image(scene(width, height), "dreammix_rgb.png")
    mask = comfy_server.upload_image(
        np.where(subject_mask(height, width), 255, 0).astype(np.uint8), "dreammix_mask_transposed.png"
    )
    error = failure(comfy_server, with_mask_image(prepared_graph("dreammix_inpaint", "tiny_sd15", image, "size"), mask))
    assert error.node_type == "DreamMixInpaint"
    assert f"mask is {height}x{width} but the image is {width}x{height}" in error.exception_message


def test_scene_without_alpha_names_the_mask(comfy_server: ComfyServer) -> None:
    """LoadImage gives a 64x64 empty mask for an image without alpha; the error must be about the mask."""
    image = comfy_server.upload_image(scene(*SIZE), "dreammix_rgb.png")
    error = failure(comfy_server, prepared_graph("dreammix_inpaint", "tiny_sd15", image, "no_alpha"))
    assert error.exception_message.startswith("The mask")


def test_a_vae_without_a_pixel_ratio_is_refused(comfy_server: ComfyServer) -> None:
    """Load VAE builds ComfyUI's MMAudio VAE from a file holding its vocoder's key (no other weight is read before
    the refusal): 1411.2 audio samples per latent, no whole number of pixels. DreamMix Inpaint refuses it."""
    folder = comfy_server.layout.base_dir / "models" / "vae"
    folder.mkdir(parents=True, exist_ok=True)
    vocoder_key = {"vocoder.activation_post.downsample.lowpass.filter": np.zeros((1, 1, 12), dtype=np.float32)}
    save_file(vocoder_key, str(folder / "mmaudio.safetensors"))
    image = comfy_server.upload_image(with_alpha(scene(*SIZE), subject_mask(*SIZE)), "dreammix_audio_vae.png")
    graph = prepared_graph("dreammix_inpaint", "tiny_sd15", image, "audio_vae")
    graph["audio_vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": "mmaudio.safetensors"}}
    graph[id_of(graph, "DreamMixInpaint")]["inputs"]["vae"] = ["audio_vae", 0]
    assert node_refusal(comfy_server, graph, "DreamMixInpaint") == (
        "This VAE is not an image VAE with a fixed pixel-per-latent ratio: DreamMix needs one."
    )


# --- SDXL (opt-in, last: the models are large and slow on CPU) --------------------------------


@pytest.mark.parametrize("case", SDXL_CASES, ids=str)
def test_api_workflow_keeps_background_exact_sdxl(
    case: Case, runs: Runs, object_info: ObjectInfo, sdxl_checkpoints: list[str]
) -> None:
    assert f"{case.ckpt}.safetensors" in sdxl_checkpoints
    check_run(case, runs, object_info)


# --- the granular crop takes the model's native size -----------------------------------------


def crop_graph(ckpt: str, image: str, with_model: bool) -> dict[str, Any]:
    crop_inputs: dict[str, Any] = {
        "image": ["load", 0],
        "mask": ["load", 1],
        "resolution": 0,
        "context_factor": 0.5,
        "feather": FEATHER,
    }
    if with_model:
        crop_inputs["model"] = ["ckpt", 0]
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"{ckpt}.safetensors"}},
        "load": {"class_type": "LoadImage", "inputs": {"image": image}},
        "crop": {"class_type": "DreamMixLocalCrop", "inputs": crop_inputs},
        "show": {"class_type": "PreviewImage", "inputs": {"images": ["crop", 0]}},
    }


def native_crop(server: ComfyServer, ckpt: str) -> np.ndarray:
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    image = server.upload_image(with_alpha(rgb, mask), "dreammix_native.png")
    (crop,) = server.output_images(server.run(crop_graph(ckpt, image, with_model=True)), "show")
    assert crop.shape[0] % 64 == 0 and crop.shape[1] % 64 == 0
    return crop


def test_local_crop_at_resolution_0_takes_the_models_native_size(comfy_server: ComfyServer) -> None:
    """The shipped granular workflow with an SD1.5 checkpoint swapped in crops at 512², not SDXL's 1024²."""
    crop = native_crop(comfy_server, "tiny_sd15")
    assert abs(crop.shape[0] * crop.shape[1] / 512**2 - 1) < 0.2
    image = comfy_server.upload_image(with_alpha(scene(*SIZE), subject_mask(*SIZE)), "dreammix_native.png")
    error = failure(comfy_server, crop_graph("tiny_sd15", image, with_model=False))
    assert error.node_type == "DreamMixLocalCrop" and "connect the model" in error.exception_message


def test_local_crop_at_resolution_0_on_sdxl_is_1024(comfy_server: ComfyServer, sdxl_checkpoints: list[str]) -> None:
    crop = native_crop(comfy_server, "tiny_sdxl")
    assert abs(crop.shape[0] * crop.shape[1] / 1024**2 - 1) < 0.2


@pytest.mark.parametrize(
    ("scene_size", "latents", "message"),
    [
        (
            (256, 192),
            1,
            "The image is 256x192 but DreamMix Local Crop cut its region from a 320x240 image: connect the same image.",
        ),
    ],
    ids=["another-scene"],
)
def test_local_replace_refusals(
    comfy_server: ComfyServer, scene_size: tuple[int, int], latents: int, message: str
) -> None:
    """Local Replace gets Local Crop's region of the SIZE scene, a scene (the same or another) and an empty latent."""
    cropped = comfy_server.upload_image(with_alpha(scene(*SIZE), subject_mask(*SIZE)), "dreammix_batch_latent.png")
    pasted = comfy_server.upload_image(
        with_alpha(scene(*scene_size), subject_mask(*scene_size)), f"dreammix_replace_{scene_size[0]}.png"
    )
    graph = crop_graph("tiny_sd15", cropped, with_model=True)
    graph["crop"]["inputs"]["resolution"] = RESOLUTION
    graph["scene"] = {"class_type": "LoadImage", "inputs": {"image": pasted}}
    graph["latents"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 256, "height": 256, "batch_size": latents},
    }
    graph["replace"] = {
        "class_type": "DreamMixLocalReplace",
        "inputs": {
            "vae": ["ckpt", 2],
            "local_latent": ["latents", 0],
            "region": ["crop", 2],
            "image": ["scene", 0],
            "mask": ["scene", 1],
            "feather": FEATHER,
        },
    }
    graph["show"] = {"class_type": "PreviewImage", "inputs": {"images": ["replace", 1]}}
    assert node_refusal(comfy_server, graph, "DreamMixLocalReplace") == message


def gch_graph(noise_mask: bool, composite_size: tuple[int, int]) -> dict[str, Any]:
    """DreamMix GCH Sampler on tiny_sd15: an empty 256x256 latent, with a 256x256 noise mask or without, and an empty
    composite image of `composite_size`."""
    width, height = composite_size
    encode = {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo", "clip": ["ckpt", 1]}}
    graph = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "positive": encode,
        "negative": copy.deepcopy(encode),
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "composite": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0},
        },
        "gch": {
            "class_type": "DreamMixGlobalSampler",
            "inputs": {
                "model": ["ckpt", 0],
                "positive": ["positive", 0],
                "negative": ["negative", 0],
                "vae": ["ckpt", 2],
                "latent": ["latent", 0],
                "composite": ["composite", 0],
                "seed": 0,
                "steps": STEPS,
                "cfg": 4.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "switch": 0.5,
            },
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["gch", 0], "vae": ["ckpt", 2]}},
        "show": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }
    if noise_mask:
        graph["mask"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 256, "height": 256}}
        graph["masked"] = {
            "class_type": "SetLatentNoiseMask",
            "inputs": {"samples": ["latent", 0], "mask": ["mask", 0]},
        }
        graph["gch"]["inputs"]["latent"] = ["masked", 0]
    return graph


@pytest.mark.parametrize(
    ("noise_mask", "composite_size", "message"),
    [
        (False, (256, 256), "The latent has no noise mask: connect DreamMix Local Replace's latent."),
        (
            True,
            SIZE,
            "The composite image and the latent's mask differ in size: connect both outputs of the same "
            "DreamMix Local Replace.",
        ),
    ],
    ids=["latent-without-mask", "composite-of-another-size"],
)
def test_gch_sampler_refusals(
    comfy_server: ComfyServer, noise_mask: bool, composite_size: tuple[int, int], message: str
) -> None:
    """An empty latent with no noise mask, or a 256x256 masked one with a SIZE composite: refused before sampling."""
    graph = gch_graph(noise_mask, composite_size)
    assert node_refusal(comfy_server, graph, "DreamMixGlobalSampler") == message
