"""Proves the ComfyUI harness: the server starts with the pack; core-node inpaint graphs run on tiny checkpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from checkpoint_cache import CheckpointCache
from server import ComfyServer

SIZE = 256
STEPS = 4


def rgba_test_image(size: int = SIZE) -> np.ndarray:
    """A colour gradient whose central square is transparent: LoadImage's mask (1 - alpha) marks it for inpainting."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    rgba = np.empty((size, size, 4), dtype=np.uint8)
    rgba[..., 0] = ramp[None, :]
    rgba[..., 1] = ramp[:, None]
    rgba[..., 2] = 128
    rgba[..., 3] = 255
    rgba[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4, 3] = 0
    return rgba


def inpaint_graph(ckpt_name: str, image_name: str, inpaint_model: bool) -> dict[str, Any]:
    """API-format core-node inpaint graph.

    An ordinary model inpaints via VAEEncodeForInpaint; a 9-channel inpainting model via
    InpaintModelConditioning, which feeds its mask + masked-image concat inputs.
    """
    graph: dict[str, Any] = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red apple", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "image": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "sample": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["ckpt", 0],
                "seed": 0,
                "steps": STEPS,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "smoke"}},
    }
    if inpaint_model:
        graph["cond"] = {
            "class_type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "vae": ["ckpt", 2],
                "pixels": ["image", 0],
                "mask": ["image", 1],
                "noise_mask": True,
            },
        }
        graph["sample"]["inputs"].update(positive=["cond", 0], negative=["cond", 1], latent_image=["cond", 2])
    else:
        graph["encode"] = {
            "class_type": "VAEEncodeForInpaint",
            "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2], "mask": ["image", 1], "grow_mask_by": 6},
        }
        graph["sample"]["inputs"].update(positive=["pos", 0], negative=["neg", 0], latent_image=["encode", 0])
    return graph


def run_inpaint(server: ComfyServer, ckpt_name: str) -> np.ndarray:
    image_name = server.upload_image(rgba_test_image(), "smoke_rgba.png")
    entry = server.run(inpaint_graph(ckpt_name, image_name, inpaint_model="inpaint" in ckpt_name))
    (image,) = server.output_images(entry)
    return image


def test_object_info_lists_core_loader_and_tiny_checkpoints(
    comfy_server: ComfyServer, checkpoints: CheckpointCache
) -> None:
    info = comfy_server.object_info()
    assert "CheckpointLoaderSimple" in info
    (choices, *_) = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    assert {"tiny_sd15.safetensors", "tiny_sd15_inpaint.safetensors"} <= set(choices)


def test_pack_imports_without_errors_or_warnings(comfy_server: ComfyServer) -> None:
    assert comfy_server.pack_import_problems() == [], comfy_server.pack_import_log()


@pytest.mark.parametrize("ckpt_name", ["tiny_sd15.safetensors", "tiny_sd15_inpaint.safetensors"])
def test_core_inpaint_graph_runs(comfy_server: ComfyServer, ckpt_name: str) -> None:
    image = run_inpaint(comfy_server, ckpt_name)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8


PACK_NODES = {
    "DreamMixLocalCrop",
    "DreamMixLocalSampler",
    "DreamMixLocalReplace",
    "DreamMixGlobalSampler",
    "DreamMixComposite",
    "DreamMixInpaint",
    "DreamMixAttributeRefine",
    "DreamMixEditPrompt",
    "DreamMixTAS",
    "DreamMixSubjectPhotos",
    "DreamMixRegularData",
    "DreamMixTrainSubjectLoRA",
    "DreamMixScore",
}


def test_every_node_schema_is_served_with_a_tooltip_on_every_input(comfy_server: ComfyServer) -> None:
    """/object_info lists a V3 node only after ComfyUI validated its schema (GET_SCHEMA on v0.33)."""
    info = comfy_server.object_info()
    served = {name for name, node in info.items() if node["python_module"] == "custom_nodes.ComfyUI-DreamMix"}
    assert served == PACK_NODES
    untipped = [
        f"{name}.{key}"
        for name in sorted(served)
        for group in ("required", "optional")
        for key, spec in info[name]["input"].get(group, {}).items()
        if not (len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("tooltip"))
    ]
    assert untipped == []
