"""The subject-training workflow: photos → attribute refinement → regular data → training → inpaint with the LoRA.

test_workflows.py checks that the UI workflow loads and matches its API twin; static tests here check its
wiring: STRING outputs feed three widget inputs of the training nodes. The run test queues the API twin
on tiny_sd15 with everything shrunk (64 px regular data and training, 2 steps each, a 4-step inpaint) and
three cut-out photos of different sizes; the LoRA lands in the test server's own loras folder. Small graphs
check DreamMix Subject Photos' errors and that the photo list reaches the trainer at each photo's size.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ComfyInstall
from PIL import Image
from server import ComfyServer
from test_workflows import (
    PACK_MODULE,
    RESOLUTION,
    SIZE,
    STEPS,
    api_without_meta,
    assert_background_exact,
    cached_nodes,
    failure,
    id_of,
    load_api,
    load_ui,
    node_refusal,
    saved_image,
    scene,
    subject_mask,
    with_alpha,
)
from workflow_format import (
    ObjectInfo,
    input_slots,
    outputs_reached,
    widgets,
)

# Graph-level: training then inpainting with the new LoRA. What differs between ComfyUI versions (ModelPatcher
# weight wrappers, LoRA loading) older checkouts run through training_probe (test_training.py).
pytestmark = pytest.mark.newest_only

NAME = "dreammix_train_subject"
NO_VLM = "none (type the attributes)"
PHOTO_SIZES = ((96, 80), (64, 64), (72, 120))
"""Width and height of the three subject photos: landscape, square, portrait."""
SHRUNK = {
    "DreamMixRegularData": {"images_per_prompt": 1, "resolution": 64, "steps": 2},
    "DreamMixTrainSubjectLoRA": {
        "steps": 2,
        "resolution": 64,
        "subject_copies": 1,
        "regular_copies": 1,
        "checkpoint_every": 1,
    },
    "DreamMixInpaint": {"steps": STEPS, "resolution": RESOLUTION},
}
"""What the tests change for a CPU run; the shipped files keep the real-use values."""


@pytest.fixture(scope="module")
def object_info(comfy_server: ComfyServer) -> ObjectInfo:
    return comfy_server.object_info()


# --- static: what the workflow wires (test_workflows.py checks it loads and matches its twin) ---


def test_string_outputs_feed_linked_widget_inputs(object_info: ObjectInfo) -> None:
    """Prompts and the dataset folder arrive by link into widget inputs, which keep their value and slot."""
    workflow = load_ui(NAME)
    for kind, names in (
        ("DreamMixRegularData", ["regular_prompts"]),
        ("DreamMixTrainSubjectLoRA", ["instance_prompt", "regular_dataset"]),
    ):
        node = next(node for node in workflow["nodes"] if node["type"] == kind)
        linked = {entry["name"]: entry for entry in node["inputs"] if entry.get("link") is not None}
        for name in names:
            assert linked[name]["widget"] == {"name": name} and linked[name]["type"] == "STRING"
        assert [entry["name"] for entry in node["inputs"]] == input_slots(object_info[kind])
        assert len(node["widgets_values"]) == len(widgets(object_info[kind]))


def test_subject_photo_lists_are_drawn_as_lists() -> None:
    """The frontend draws list outputs with the grid shape (6); the workflow stores it as the frontend saves it."""
    photos = next(node for node in load_ui(NAME)["nodes"] if node["type"] == "DreamMixSubjectPhotos")
    assert [entry.get("shape") for entry in photos["outputs"]] == [6, 6, None]


def test_api_twin_wires_photos_prompts_dataset_and_lora(object_info: ObjectInfo) -> None:
    graph = api_without_meta(NAME)
    ckpt, photos, refine, regular, train, inpaint, save = (
        id_of(graph, kind)
        for kind in (
            "CheckpointLoaderSimple",
            "DreamMixSubjectPhotos",
            "DreamMixAttributeRefine",
            "DreamMixRegularData",
            "DreamMixTrainSubjectLoRA",
            "DreamMixInpaint",
            "SaveImage",
        )
    )
    loads = [graph[photos]["inputs"][f"image_{n}"][0] for n in (1, 2, 3)]
    for n, load in enumerate(loads, start=1):
        assert graph[load]["class_type"] == "LoadImage"
        assert graph[photos]["inputs"][f"image_{n}"] == [load, 0] and graph[photos]["inputs"][f"mask_{n}"] == [load, 1]
    assert graph[photos]["inputs"]["invert_masks"] is True and len(set(loads)) == 3
    assert graph[refine]["inputs"]["subject_images"] == [photos, 0]
    assert graph[refine]["inputs"]["class_word"] == "backpack" and graph[refine]["inputs"]["typed_attributes"] == "blue"
    assert graph[refine]["inputs"]["vlm"] == NO_VLM and graph[refine]["inputs"]["vlm_hub_id"] == ""
    base = {"model": [ckpt, 0], "clip": [ckpt, 1], "vae": [ckpt, 2]}
    assert base.items() <= graph[regular]["inputs"].items() and base.items() <= graph[train]["inputs"].items()
    assert graph[regular]["inputs"]["regular_prompts"] == [refine, 2]
    assert graph[train]["inputs"]["instance_prompt"] == [refine, 1]
    assert graph[train]["inputs"]["regular_dataset"] == [regular, 0]
    assert graph[train]["inputs"]["subject_images"] == [photos, 0]
    assert graph[train]["inputs"]["subject_masks"] == [photos, 1]
    assert "regular_masks" not in graph[train]["inputs"]
    inputs = graph[inpaint]["inputs"]
    assert inputs["model"] == [train, 0] and inputs["vae"] == [ckpt, 2]
    scene_load = inputs["image"][0]
    assert inputs["mask"] == [scene_load, 1] and scene_load not in loads
    assert graph[inputs["positive"][0]]["inputs"] == {
        "text": "a photo of a sks backpack on the grass",
        "clip": [ckpt, 1],
    }
    assert graph[inputs["negative"][0]]["inputs"] == {"text": "", "clip": [ckpt, 1]}
    assert graph[save]["inputs"]["images"] == [inpaint, 0]
    previews = {tuple(node["inputs"]["images"]) for node in graph.values() if node["class_type"] == "PreviewImage"}
    assert previews == {(photos, 2), (regular, 1), (train, 2)}
    assert outputs_reached(graph, object_info) == set(graph), "a node no output depends on"


def test_pack_nodes_keep_their_real_use_defaults(object_info: ObjectInfo) -> None:
    """The shipped file trains for real (30 images per prompt, 1000 steps, native resolution); tests shrink it."""
    graph = api_without_meta(NAME)
    changed = {}
    for node in graph.values():
        info = object_info[node["class_type"]]
        if info["python_module"] != PACK_MODULE:
            continue
        for widget in widgets(info):
            value = node["inputs"].get(widget.name)
            if widget.name and not isinstance(value, list) and value != widget.options.get("default"):
                changed[f"{node['class_type']}.{widget.name}"] = value
    assert changed == {
        "DreamMixAttributeRefine.typed_attributes": "blue",
        "DreamMixRegularData.dataset_folder": "dreammix_regular/backpack",
        "DreamMixTrainSubjectLoRA.lora_name": "sks_backpack",
    }


# --- running the API twin --------------------------------------------------------------------


def photo_subject(width: int, height: int) -> np.ndarray:
    """The subject of a photo: a centred ellipse."""
    y, x = np.mgrid[0:height, 0:width]
    return ((x - width / 2) / (width / 3)) ** 2 + ((y - height / 2) / (height / 3)) ** 2 <= 1


def cut_out(rgb: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """RGBA with the subject opaque and the background transparent, as a background remover saves it."""
    return np.dstack([rgb, np.where(subject, 255, 0).astype(np.uint8)])


def upload_photos(server: ComfyServer, tag: str, sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES) -> list[str]:
    return [
        server.upload_image(cut_out(scene(*size), photo_subject(*size)), f"{tag}-photo{n}.png")
        for n, size in enumerate(sizes, start=1)
    ]


def training_graph(server: ComfyServer, tag: str) -> dict[str, Any]:
    """The API twin on tiny_sd15, shrunk, with its own photos, scene, LoRA name and output prefix."""
    graph = copy.deepcopy(load_api(NAME))
    graph[id_of(graph, "CheckpointLoaderSimple")]["inputs"]["ckpt_name"] = "tiny_sd15.safetensors"
    return shrunk_training_graph(server, graph, tag)


def shrunk_training_graph(server: ComfyServer, graph: dict[str, Any], tag: str) -> dict[str, Any]:
    """A training workflow's graph (any family's) set for a CPU run under `tag`: the test photos and scene uploaded
    into its image loaders, its output prefix and LoRA name the tag, the SHRUNK settings."""
    photos = graph[id_of(graph, "DreamMixSubjectPhotos")]["inputs"]
    for n, name in enumerate(upload_photos(server, tag), start=1):
        graph[photos[f"image_{n}"][0]]["inputs"]["image"] = name
    inpaint = graph[id_of(graph, "DreamMixInpaint")]["inputs"]
    rgb, mask = scene(*SIZE), subject_mask(*SIZE)
    graph[inpaint["image"][0]]["inputs"]["image"] = server.upload_image(with_alpha(rgb, mask), f"{tag}-scene.png")
    graph[id_of(graph, "SaveImage")]["inputs"]["filename_prefix"] = tag
    graph[id_of(graph, "DreamMixTrainSubjectLoRA")]["inputs"]["lora_name"] = tag
    for kind, values in SHRUNK.items():
        graph[id_of(graph, kind)]["inputs"].update(values)
    return graph


def lora_path(server: ComfyServer, name: str) -> Path:
    return server.layout.loras_dir / f"{name}.safetensors"


@dataclass(frozen=True)
class TrainingRun:
    graph: dict[str, Any]
    entry: dict[str, Any]
    image: np.ndarray
    lora: bytes
    again: dict[str, Any]
    """The /history entry of the same graph queued once more right after."""


@pytest.fixture(scope="module")
def trained(comfy_server: ComfyServer) -> TrainingRun:
    tag = "train-tiny_sd15"
    assert not lora_path(comfy_server, tag).exists()
    graph = training_graph(comfy_server, tag)
    entry = comfy_server.run(graph)
    lora = lora_path(comfy_server, tag).read_bytes()
    return TrainingRun(graph, entry, saved_image(comfy_server, entry, graph), lora, comfy_server.run(graph))


def test_workflow_trains_a_lora_and_inpaints_with_it(
    comfy_server: ComfyServer, comfy_install: ComfyInstall, trained: TrainingRun, object_info: ObjectInfo
) -> None:
    """Every pack node executed, the LoRA is in the test server's loras folder only, the background is exact."""
    pack_ids = {
        nid for nid, node in trained.graph.items() if object_info[node["class_type"]]["python_module"] == PACK_MODULE
    }
    assert {trained.graph[nid]["class_type"] for nid in pack_ids} == {
        "DreamMixSubjectPhotos",
        "DreamMixAttributeRefine",
        "DreamMixRegularData",
        "DreamMixTrainSubjectLoRA",
        "DreamMixInpaint",
    }
    assert not pack_ids & cached_nodes(trained.entry), "a pack node was served from the cache, not executed"
    lora_name = trained.graph[id_of(trained.graph, "DreamMixTrainSubjectLoRA")]["inputs"]["lora_name"]
    assert trained.lora and not (comfy_install.path / "models" / "loras" / f"{lora_name}.safetensors").exists()
    assert_background_exact(trained.image, scene(*SIZE), subject_mask(*SIZE))
    previews = [nid for nid, node in trained.graph.items() if node["class_type"] == "PreviewImage"]
    assert all(comfy_server.output_images(trained.entry, nid) for nid in previews)


def test_the_same_graph_again_is_served_from_the_cache(comfy_server: ComfyServer, trained: TrainingRun) -> None:
    """Queueing the unchanged graph trains nothing: ComfyUI reuses every output, the LoRA stays as it was."""
    train = id_of(trained.graph, "DreamMixTrainSubjectLoRA")
    assert train in cached_nodes(trained.again)
    assert lora_path(comfy_server, trained.graph[train]["inputs"]["lora_name"]).read_bytes() == trained.lora


def test_training_again_under_the_same_lora_name_is_refused(comfy_server: ComfyServer, trained: TrainingRun) -> None:
    """A changed setting re-runs the trainer; with the same lora_name it stops with a message, the LoRA untouched."""
    graph = copy.deepcopy(trained.graph)
    train = graph[id_of(graph, "DreamMixTrainSubjectLoRA")]["inputs"]
    train["steps"] += 1
    error = failure(comfy_server, graph)
    assert error.node_type == "DreamMixTrainSubjectLoRA"
    assert f"The LoRA {train['lora_name']}.safetensors already exists" in error.exception_message
    assert error.exception_type.endswith("DreamMixInputError"), "a crash, not a message"
    assert lora_path(comfy_server, train["lora_name"]).read_bytes() == trained.lora


# --- DreamMix Subject Photos on small graphs -------------------------------------------------


def photos_graph(photo_inputs: dict[str, list[Any]], invert_masks: bool = True) -> dict[str, Any]:
    """LoadImage nodes `load1`, `load2`, … (set by the caller) → Subject Photos → previews of both outputs."""
    return {
        "photos": {"class_type": "DreamMixSubjectPhotos", "inputs": {**photo_inputs, "invert_masks": invert_masks}},
        "list": {"class_type": "PreviewImage", "inputs": {"images": ["photos", 0]}},
        "batch": {"class_type": "PreviewImage", "inputs": {"images": ["photos", 2]}},
    }


def load(name: str) -> dict[str, Any]:
    return {"class_type": "LoadImage", "inputs": {"image": name}}


def refusal(server: ComfyServer, graph: dict[str, Any]) -> str:
    """The message Subject Photos stops the run with."""
    return node_refusal(server, graph, "DreamMixSubjectPhotos")


def test_photo_list_keeps_each_photo_at_its_size(comfy_server: ComfyServer) -> None:
    """`images` is a list (one preview per photo, each at its own size); `preview` is one batch at the first size."""
    names = upload_photos(comfy_server, "photos-sizes")
    wires = {f"{kind}_{n}": [f"load{n}", slot] for n in (1, 2, 3) for kind, slot in (("image", 0), ("mask", 1))}
    graph = photos_graph(wires) | {f"load{n}": load(name) for n, name in enumerate(names, start=1)}
    entry = comfy_server.run(graph)
    listed = comfy_server.output_images(entry, "list")
    assert [image.shape[:2] for image in listed] == [(h, w) for w, h in PHOTO_SIZES]
    for image, size in zip(listed, PHOTO_SIZES):
        np.testing.assert_array_equal(image, scene(*size))
    batch = comfy_server.output_images(entry, "batch")
    assert [image.shape[:2] for image in batch] == [PHOTO_SIZES[0][::-1]] * 3


def photos_node(order: tuple[int, ...]) -> dict[str, Any]:
    """DreamMix Subject Photos taking image and mask of `load<n>` for each n in `order`, inverted."""
    wires = {
        f"{kind}_{n}": [f"load{src}", slot]
        for n, src in enumerate(order, 1)
        for kind, slot in (("image", 0), ("mask", 1))
    }
    return {"class_type": "DreamMixSubjectPhotos", "inputs": {**wires, "invert_masks": True}}


def trainer_graph(server: ComfyServer, tag: str, **train_inputs: Any) -> dict[str, Any]:
    """Three uploaded photos (`load1`…`load3`) → Subject Photos (`photos`) → the shipped trainer on tiny_sd15, shrunk,
    without regular data; `train_inputs` replace its inputs."""
    names = upload_photos(server, tag)
    graph = {f"load{n}": load(name) for n, name in enumerate(names, start=1)}
    graph["photos"] = photos_node((1, 2, 3))
    graph["ckpt"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}}
    shipped = api_without_meta(NAME)
    train = shipped[id_of(shipped, "DreamMixTrainSubjectLoRA")]["inputs"] | SHRUNK["DreamMixTrainSubjectLoRA"]
    train |= {
        "model": ["ckpt", 0],
        "clip": ["ckpt", 1],
        "vae": ["ckpt", 2],
        "subject_images": ["photos", 0],
        "subject_masks": ["photos", 1],
        "instance_prompt": "a photo of a sks backpack",
        "regular_dataset": "",
        "lora_name": tag,
    }
    graph["train"] = {"class_type": "DreamMixTrainSubjectLoRA", "inputs": train | train_inputs}
    graph["curve"] = {"class_type": "PreviewImage", "inputs": {"images": ["train", 2]}}
    return graph


def test_trainer_receives_each_photo_at_its_size(comfy_server: ComfyServer) -> None:
    """Images from one Subject Photos node, masks from another with the photos rotated: the trainer's own size
    check names the first photo's and the second photo's sizes, so it got both lists unresized."""
    graph = trainer_graph(comfy_server, "photos-trainer", subject_masks=["rotated", 1])
    graph["rotated"] = photos_node((2, 3, 1))
    error = failure(comfy_server, graph)
    assert error.node_type == "DreamMixTrainSubjectLoRA" and error.exception_type.endswith("DreamMixInputError")
    (image_w, image_h), (mask_w, mask_h) = PHOTO_SIZES[:2]
    assert re.search(
        f"photo 1: the mask is {mask_w}[x×]{mask_h} but the image is {image_w}[x×]{image_h}", error.exception_message
    )


def test_image_without_mask_is_a_clear_error(comfy_server: ComfyServer) -> None:
    names = upload_photos(comfy_server, "photos-no-mask")
    graph = photos_graph({"image_1": ["load1", 0], "mask_1": ["load1", 1], "image_2": ["load2", 0]})
    graph |= {"load1": load(names[0]), "load2": load(names[1])}
    message = refusal(comfy_server, graph)
    assert message.startswith("Photo 2 has an image but no mask: connect mask_2")


def test_mask_without_image_is_a_clear_error(comfy_server: ComfyServer) -> None:
    names = upload_photos(comfy_server, "photos-no-image")
    graph = photos_graph({"image_1": ["load1", 0], "mask_1": ["load1", 1], "mask_3": ["load2", 1]})
    graph |= {"load1": load(names[0]), "load2": load(names[1])}
    message = refusal(comfy_server, graph)
    assert message.startswith("Photo 3 has a mask but no image: connect image_3")


def test_photo_without_alpha_names_the_64x64_mask(comfy_server: ComfyServer) -> None:
    """LoadImage gives a 64x64 empty mask for a photo without alpha: the error names the photo and both sizes."""
    width, height = PHOTO_SIZES[0]
    name = comfy_server.upload_image(scene(width, height), "photos-rgb.png")
    graph = photos_graph({"image_1": ["load1", 0], "mask_1": ["load1", 1]}) | {"load1": load(name)}
    message = refusal(comfy_server, graph)
    assert message.startswith(f"Photo 1: the mask is 64x64 but the image is {width}x{height}")
    assert "Load Image gives a 64x64 empty mask for a photo without alpha channel" in message


def test_64x64_photo_without_alpha_is_not_all_subject(comfy_server: ComfyServer) -> None:
    """Its 64x64 empty placeholder mask fits the photo's size; inverted it would make the whole photo the subject."""
    name = comfy_server.upload_image(scene(64, 64), "photos-rgb-64.png")
    graph = photos_graph({"image_1": ["load1", 0], "mask_1": ["load1", 1]}) | {"load1": load(name)}
    assert refusal(comfy_server, graph).startswith("Photo 1 has no transparent pixel")


@pytest.mark.parametrize(
    ("alpha", "invert_masks", "hint"),
    [(0, True, "empty after inversion"), (255, False, "turn invert_masks on")],
    ids=["transparent-inverted", "opaque-not-inverted"],
)
def test_empty_mask_is_a_clear_error(comfy_server: ComfyServer, alpha: int, invert_masks: bool, hint: str) -> None:
    """A photo transparent everywhere (inverted), or opaque everywhere (not inverted), marks no subject pixel."""
    rgb = scene(*PHOTO_SIZES[0])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], alpha, dtype=np.uint8)])
    name = comfy_server.upload_image(rgba, f"photos-alpha{alpha}.png")
    graph = photos_graph({"image_1": ["load1", 0], "mask_1": ["load1", 1]}, invert_masks) | {"load1": load(name)}
    message = refusal(comfy_server, graph)
    assert message.startswith("Photo 1: the mask is empty") and hint in message


def test_image_batch_is_a_clear_error(comfy_server: ComfyServer) -> None:
    (name,) = upload_photos(comfy_server, "photos-batch", PHOTO_SIZES[:1])
    graph = photos_graph({"image_1": ["repeat", 0], "mask_1": ["load1", 1]}) | {"load1": load(name)}
    graph["repeat"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["load1", 0], "amount": 2}}
    message = refusal(comfy_server, graph)
    assert message == (
        "image_1 holds a batch of 2 images: each input takes one. Connect them to image_1, image_2, … one by one "
        "(split a batch with 'Image From Batch')."
    )


# --- names that would reach outside ComfyUI's folders, and a LoRA that cannot be saved ---------


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("/tmp/dreammix_outside", "is outside"),
        ("../../dreammix_outside", "is outside"),
        ("dreammix\0regular", "NUL character"),
    ],
)
def test_regular_data_folder_stays_in_the_output_folder(comfy_server: ComfyServer, folder: str, message: str) -> None:
    graph = training_graph(comfy_server, "paths-regular")
    graph[id_of(graph, "DreamMixRegularData")]["inputs"]["dataset_folder"] = folder
    assert message in node_refusal(comfy_server, graph, "DreamMixRegularData")
    assert not os.path.exists("/tmp/dreammix_outside")
    assert not (comfy_server.layout.root / "dreammix_outside").exists()


def test_regular_data_folder_naming_a_file_is_refused(comfy_server: ComfyServer) -> None:
    (comfy_server.layout.output_dir / "a_file").write_text("not a folder")
    graph = training_graph(comfy_server, "paths-file")
    graph[id_of(graph, "DreamMixRegularData")]["inputs"]["dataset_folder"] = "a_file"
    assert "is a file, not a folder" in node_refusal(comfy_server, graph, "DreamMixRegularData")


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (
            "a photo of a backpack\na photo of a sks backpack",
            "Regular prompts describe the class, never the subject: remove 'sks' from 'a photo of a sks backpack'",
        ),
        ("\n  \n", "Type at least one regular prompt (one per line)."),
    ],
    ids=["with-the-identifier", "blank-lines"],
)
def test_unusable_regular_prompts_are_refused(comfy_server: ComfyServer, prompts: str, message: str) -> None:
    graph = training_graph(comfy_server, "paths-sks")
    graph[id_of(graph, "DreamMixRegularData")]["inputs"]["regular_prompts"] = prompts
    assert node_refusal(comfy_server, graph, "DreamMixRegularData") == message


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad\0name", "NUL character"),
        ("../../escape", "is outside"),
        ("what?", "not a usable LoRA name"),
        ("x" * 244, "lora_name is too long (244 characters): keep it to 243 or fewer."),
    ],
)
def test_unwritable_lora_names_are_refused_before_training(comfy_server: ComfyServer, name: str, message: str) -> None:
    graph = training_graph(comfy_server, "paths-lora")
    graph[id_of(graph, "DreamMixTrainSubjectLoRA")]["inputs"]["lora_name"] = name
    before = sorted(comfy_server.layout.loras_dir.rglob("*"))
    assert message in node_refusal(comfy_server, graph, "DreamMixTrainSubjectLoRA")
    assert sorted(comfy_server.layout.loras_dir.rglob("*")) == before  # refused before any step or file


def test_a_lora_folder_taken_by_a_file_is_refused(comfy_server: ComfyServer) -> None:
    """lora_name 'blocker/sub' needs a folder 'blocker' in the loras folder, where a file of that name is."""
    blocker = comfy_server.layout.loras_dir / "blocker"
    blocker.write_text("a file, not a folder")
    graph = trainer_graph(comfy_server, "blocked", lora_name="blocker/sub")
    assert node_refusal(comfy_server, graph, "DreamMixTrainSubjectLoRA") == (
        f"The LoRA cannot be written to {blocker}: [Errno 17] File exists: '{blocker}'"
    )
    assert blocker.read_text() == "a file, not a folder"


def write_regular_data(folder: Path, count: int) -> None:
    """A regular dataset as DreamMix Regular Data writes it: a sub-folder per prompt with prompt.txt and `count`
    image and mask pairs 0000.png, 0000_mask.png, …"""
    sub = folder / "a_photo_of_a_backpack"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / "prompt.txt").write_text("a photo of a backpack")
    for i in range(count):
        Image.fromarray(scene(64, 64)).save(sub / f"{i:04d}.png")
        Image.fromarray(np.where(photo_subject(64, 64), 255, 0).astype(np.uint8)).save(sub / f"{i:04d}_mask.png")


@pytest.mark.parametrize(
    ("train_inputs", "message"),
    [
        (
            {"subject_masks": ["two", 1]},
            "3 subject photos but 2 masks: give one mask for all, or one per subject photo.",
        ),
        (
            {"regular_dataset": "no_regular"},
            "The regular dataset folder {output}/no_regular does not exist: run DreamMix Regular Data.",
        ),
        (
            {"regular_dataset": "empty_regular"},
            "{output}/empty_regular holds no regular images with masks: run DreamMix Regular Data.",
        ),
        ({"regular_dataset": "three_regular", "regular_masks": ["two", 1]}, "2 regular masks for 3 regular images."),
    ],
    ids=["masks-of-two-photos", "no-regular-folder", "empty-regular-folder", "regular-masks-of-two-photos"],
)
def test_trainer_refuses_data_that_does_not_fit(
    comfy_server: ComfyServer, train_inputs: dict[str, Any], message: str
) -> None:
    """`two` is a second Subject Photos node of photos 1 and 2; `empty_regular` holds nothing, `three_regular` holds
    three regular images with masks."""
    output = comfy_server.layout.output_dir
    (output / "empty_regular").mkdir(exist_ok=True)
    write_regular_data(output / "three_regular", 3)
    graph = trainer_graph(comfy_server, "refused-data", **train_inputs)
    graph["two"] = photos_node((1, 2))
    assert node_refusal(comfy_server, graph, "DreamMixTrainSubjectLoRA") == message.format(output=output)


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def test_a_failed_save_keeps_the_trained_weights_and_the_rerun_saves_them(comfy_server: ComfyServer) -> None:
    """The loras folder is made immutable after its checkpoint sub-folder exists: training runs, the save
    fails, and the message points to the kept final checkpoint; once writable again, the same graph
    resumes at the last step and only saves."""
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr (e2fsprogs) to make a folder unwritable even for root")
    tag = "save-fails"
    graph = training_graph(comfy_server, tag)
    graph[id_of(graph, "DreamMixTrainSubjectLoRA")]["inputs"]["checkpoint_every"] = 0
    loras, target = comfy_server.layout.loras_dir, lora_path(comfy_server, tag)
    checkpoints = target.with_name(f"{tag}.checkpoints")
    checkpoints.mkdir()
    chattr("+i", loras)
    try:
        message = node_refusal(comfy_server, graph, "DreamMixTrainSubjectLoRA")
    finally:
        chattr("-i", loras)
    assert "could not be written" in message and str(checkpoints) in message
    assert [p.name for p in checkpoints.iterdir()] == ["step_000002.state"]
    assert not target.exists()
    comfy_server.run(graph)
    assert target.is_file()


def test_a_damaged_regular_image_is_skipped_and_named(comfy_server: ComfyServer, trained: TrainingRun) -> None:
    """Regular Data (if it runs again) and training read the folder the first run wrote; a truncated PNG there is
    skipped by both with a warning naming it."""
    folder = trained.graph[id_of(trained.graph, "DreamMixRegularData")]["inputs"]["dataset_folder"]
    damaged = sorted((comfy_server.layout.output_dir / folder).glob("*/0000.png"))[0]
    damaged.write_bytes(damaged.read_bytes()[:100])
    graph = copy.deepcopy(trained.graph)
    graph[id_of(graph, "DreamMixTrainSubjectLoRA")]["inputs"]["lora_name"] = "damaged-regular"
    comfy_server.run(graph)
    assert lora_path(comfy_server, "damaged-regular").is_file()
    assert f"skipping unreadable regular image {damaged}" in comfy_server.log_text()


def test_regular_data_with_every_image_unreadable_is_refused(comfy_server: ComfyServer, trained: TrainingRun) -> None:
    """A copy of the first run's dataset with every image truncated (the masks intact): nothing is left to generate,
    nothing loads, and Regular Data says what to do."""
    graph = copy.deepcopy(trained.graph)
    regular = graph[id_of(graph, "DreamMixRegularData")]["inputs"]
    folder = comfy_server.layout.output_dir / "unreadable_regular"
    shutil.copytree(comfy_server.layout.output_dir / regular["dataset_folder"], folder)
    images = [path for path in folder.glob("*/*.png") if not path.name.endswith("_mask.png")]
    assert images
    for image in images:
        image.write_bytes(image.read_bytes()[:100])
    regular["dataset_folder"] = "unreadable_regular"
    assert node_refusal(comfy_server, graph, "DreamMixRegularData") == (
        f"Every image in {folder} is unreadable: delete the damaged files to regenerate them."
    )
