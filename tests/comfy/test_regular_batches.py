"""DreamMix Regular Data in batches (ComfyUI tier): the same files as one by one, each image keeping its own seed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from server import ComfyServer

PROMPTS = "a photo of a teapot\na photo of a clay teapot"
PER_PROMPT = 3


def regular_data(server: ComfyServer, folder: str, batch_size: int) -> list[np.ndarray]:
    """Generates the two prompts' images into `folder` and reads the saved files back, prompt by prompt."""
    graph = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "regular": {
            "class_type": "DreamMixRegularData",
            "inputs": {
                "model": ["ckpt", 0],
                "clip": ["ckpt", 1],
                "vae": ["ckpt", 2],
                "regular_prompts": PROMPTS,
                "images_per_prompt": PER_PROMPT,
                "dataset_folder": folder,
                "resolution": 64,
                "steps": 3,
                "cfg": 6.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "seed": 7,
                "background_suffix": ", white background",
                "negative_prompt": "blurry",
                "mask_threshold": 0.15,
                "batch_size": batch_size,
            },  # fmt: skip
        },
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["regular", 1]}},
    }
    server.run(graph)
    files = sorted((server.layout.output_dir / folder).glob("*/*.png"))
    images = [np.asarray(Image.open(path)) for path in files if "mask" not in path.name]
    assert len(images) == 2 * PER_PROMPT
    return images


@pytest.mark.newest_only  # the pack's own batching over comfy.sample.sample, the call every KSampler batch takes
def test_batches_give_the_one_by_one_files(comfy_server: ComfyServer) -> None:
    """Batches of 2 over 3 images per prompt (a full batch and a remainder): every file equals the one-by-one file
    up to one 8-bit step where batched convolutions round differently."""
    one_by_one = regular_data(comfy_server, "dreammix_regular/one_by_one", 1)
    batched = regular_data(comfy_server, "dreammix_regular/batched", 2)
    for single, batch in zip(one_by_one, batched):
        difference = np.abs(single.astype(int) - batch.astype(int))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    assert not np.array_equal(one_by_one[0], one_by_one[1])  # each image its own seed
