"""The regular-data folder (method.md §4): the ADM's generated images, one sub-folder per prompt.

    <folder>/<slug of the prompt>/prompt.txt      the prompt, as trained on
    <folder>/<slug of the prompt>/0000.png         image i
    <folder>/<slug of the prompt>/0000_mask.png    its object mask (white = object)

An image counts once its mask exists, so an interrupted run leaves nothing half-counted; files are
written with "x" and never replaced, so a re-run only generates what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

import numpy as np
import torch
from PIL import Image

LOG = logging.getLogger("DreamMix")
PROMPT_FILE = "prompt.txt"
MASK_SUFFIX = "_mask.png"


def save_png(array: torch.Tensor, path: str) -> None:
    """Write an image (H, W, 3) or mask (H, W) in [0, 1] without ever replacing a file."""
    pixels = (array.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    with open(path, "xb") as handle:  # "x": refuse to overwrite
        Image.fromarray(pixels).save(handle, format="PNG")


def load_png(path: str, mask: bool = False) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert("L" if mask else "RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array.copy())


def prompt_folder(root: str, prompt: str) -> str:
    """The prompt's sub-folder: readable words plus a hash, so prompts that read alike stay apart."""
    words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:60] or "prompt"
    return os.path.join(root, f"{words}_{hashlib.sha1(prompt.encode()).hexdigest()[:6]}")


def image_paths(folder: str, index: int) -> tuple[str, str]:
    """(image, mask) file paths of image `index` in a prompt's folder."""
    return os.path.join(folder, f"{index:04d}.png"), os.path.join(folder, f"{index:04d}{MASK_SUFFIX}")


def image_seed(seed: int, prompt: str, index: int) -> int:
    """The seed of image `index` of `prompt`: the same image whatever else the run generates."""
    return (seed + int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16) + index) % 2**63


def missing_images(root: str, prompts: list[str], per_prompt: int) -> list[tuple[str, str, int]]:
    """(prompt, folder, index) of every image still to generate; creates the folders and prompt files."""
    todo = []
    for prompt in prompts:
        folder = prompt_folder(root, prompt)
        os.makedirs(folder, exist_ok=True)
        prompt_file = os.path.join(folder, PROMPT_FILE)
        if not os.path.isfile(prompt_file):
            with open(prompt_file, "x", encoding="utf-8") as handle:
                handle.write(prompt)
        todo += [(prompt, folder, i) for i in range(per_prompt) if not os.path.isfile(image_paths(folder, i)[1])]
    return todo


def save_pair(folder: str, index: int, image: torch.Tensor, mask: torch.Tensor) -> None:
    """Image first, mask last: the mask's presence marks the pair complete (an image left alone is reused)."""
    image_path, mask_path = image_paths(folder, index)
    if not os.path.isfile(image_path):
        save_png(image[..., :3], image_path)
    save_png(mask, mask_path)


def load_pair(image_path: str, mask_path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A regular image and its mask; None, with a warning naming the file, when either is damaged."""
    try:
        return load_png(image_path), load_png(mask_path, mask=True)
    except (OSError, ValueError) as error:  # a damaged file: use the others, say which
        LOG.warning("DreamMix: skipping unreadable regular image %s (%s)", image_path, error)
        return None


def read_regular_dataset(folder: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(prompt, image (H, W, 3), mask (H, W)) of every complete image in the folder, sorted."""
    items = []
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub)
        if not os.path.isfile(os.path.join(path, PROMPT_FILE)):
            continue
        with open(os.path.join(path, PROMPT_FILE), encoding="utf-8") as handle:
            prompt = handle.read().strip()
        for name in sorted(os.listdir(path)):
            if name.endswith(".png") and not name.endswith(MASK_SUFFIX):
                mask_path = os.path.join(path, name[: -len(".png")] + MASK_SUFFIX)
                pair = load_pair(os.path.join(path, name), mask_path) if os.path.isfile(mask_path) else None
                if pair is not None:
                    items.append((prompt, *pair))
    return items


def batches(todo: list[tuple[str, str, int]], size: int) -> list[list[tuple[str, str, int]]]:
    """The missing (prompt, folder, index) images in runs of at most `size` of one prompt, in order."""
    runs: list[list[tuple[str, str, int]]] = []
    for item in todo:
        if runs and runs[-1][0][0] == item[0] and len(runs[-1]) < size:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
