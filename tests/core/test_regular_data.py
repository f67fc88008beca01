"""The regular-data folder format: what is missing, what is never overwritten, what is read back."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from dreammix_core.training.regular_data import (
    MASK_SUFFIX,
    PROMPT_FILE,
    batches,
    image_paths,
    image_seed,
    load_pair,
    missing_images,
    prompt_folder,
    read_regular_dataset,
    save_pair,
)


def _pair(value: float) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.full((4, 6, 3), value)
    mask = torch.zeros(4, 6)
    mask[1:3, 2:4] = 1
    return image, mask


def test_missing_images_creates_the_prompt_folders_and_skips_complete_pairs(tmp_path) -> None:
    prompts = ["a photo of a teapot", "a photo of a clay teapot"]
    todo = missing_images(str(tmp_path), prompts, 3)
    assert [(p, i) for p, _, i in todo] == [(p, i) for p in prompts for i in range(3)]
    first = prompt_folder(str(tmp_path), prompts[0])
    assert open(os.path.join(first, PROMPT_FILE), encoding="utf-8").read() == prompts[0]
    save_pair(first, 1, *_pair(0.5))
    image_only = image_paths(first, 2)[0]
    open(image_only, "wb").close()  # an image without its mask: not complete, still to do
    todo = missing_images(str(tmp_path), prompts, 3)
    assert [(p, i) for p, _, i in todo] == [(prompts[0], 0), (prompts[0], 2)] + [(prompts[1], i) for i in range(3)]


def test_prompt_folders_of_alike_prompts_differ(tmp_path) -> None:
    """'Red teapot!' and 'red teapot' give the same words; the hash keeps their images apart."""
    assert prompt_folder("r", "Red teapot!") != prompt_folder("r", "red teapot")
    assert os.path.basename(prompt_folder("r", "Red teapot!")).startswith("red_teapot_")
    assert os.path.basename(prompt_folder("r", "...a teapot")).startswith("a_teapot_")  # no leading _
    assert os.path.basename(prompt_folder("r", "!!!")).startswith("prompt_")  # no words at all


def test_save_pair_never_replaces_a_file(tmp_path) -> None:
    folder = missing_images(str(tmp_path), ["p"], 1)[0][1]
    save_pair(folder, 0, *_pair(0.25))
    with pytest.raises(FileExistsError):
        save_pair(folder, 0, *_pair(0.75))
    save_pair(folder, 1, *_pair(0.25))
    os.remove(image_paths(folder, 1)[1])  # interrupted after the image: the image is reused, only the mask written
    save_pair(folder, 1, *_pair(0.75))
    items = read_regular_dataset(str(tmp_path))
    assert [round(float(image.mean()), 2) for _, image, _ in items] == [0.25, 0.25]


def test_read_back_sorted_with_masks_and_damaged_files_skipped(tmp_path, caplog) -> None:
    prompts = ["b prompt", "a prompt"]
    for prompt, value in zip(prompts, (0.2, 0.6)):
        folder = missing_images(str(tmp_path), [prompt], 1)[0][1]
        save_pair(folder, 0, *_pair(value))
    folder_b = prompt_folder(str(tmp_path), "b prompt")
    with open(os.path.join(folder_b, "0001.png"), "wb") as handle:
        handle.write(b"not a png")
    open(os.path.join(folder_b, "0001" + MASK_SUFFIX), "wb").close()
    save_pair(folder_b, 2, *_pair(0.4))
    os.remove(image_paths(folder_b, 2)[1])  # no mask: not read
    os.mkdir(tmp_path / "0_not_a_prompt_folder")  # sorted first, no prompt.txt: passed over
    with caplog.at_level(logging.WARNING, logger="DreamMix"):
        items = read_regular_dataset(str(tmp_path))
    folders = sorted(f for f in os.listdir(tmp_path) if os.path.isfile(os.path.join(tmp_path, f, PROMPT_FILE)))
    expected_order = [open(os.path.join(tmp_path, f, PROMPT_FILE)).read() for f in folders]
    assert [prompt for prompt, _, _ in items] == expected_order
    by_prompt = {prompt: (image, mask) for prompt, image, mask in items}
    image, mask = by_prompt["b prompt"]
    assert image.shape == (4, 6, 3) and torch.allclose(image, torch.full((4, 6, 3), 51 / 255))
    assert torch.equal(mask, _pair(0)[1])
    damaged = os.path.join(folder_b, "0001.png")
    assert f"DreamMix: skipping unreadable regular image {damaged} (" in caplog.text


def test_image_seed_is_fixed_by_seed_prompt_and_index() -> None:
    """Hand-computed: sha1('a photo of a teapot') starts 152b5701 = 355161857."""
    assert image_seed(0, "a photo of a teapot", 0) == 355161857
    assert image_seed(10, "a photo of a teapot", 2) == 355161869
    assert image_seed(2**63 - 355161857, "a photo of a teapot", 3) == 3


def test_saved_values_are_clamped_to_the_unit_range(tmp_path) -> None:
    image = torch.full((4, 6, 3), 1.7)
    image[0, 0] = -0.5
    save_pair(str(tmp_path), 0, image, torch.ones(4, 6))
    loaded = load_pair(*image_paths(str(tmp_path), 0))
    assert loaded is not None
    assert loaded[0][0, 0].tolist() == [0.0, 0.0, 0.0] and loaded[0][1, 1].tolist() == [1.0, 1.0, 1.0]


def test_batches_hold_one_prompt_each_in_order() -> None:
    """Missing images 0, 2, 3, 4 of prompt a and 1 of prompt b in runs of 2: a's split 2 + 2, b alone."""
    todo = [("a", "fa", 0), ("a", "fa", 2), ("a", "fa", 3), ("a", "fa", 4), ("b", "fb", 1)]
    assert batches(todo, 2) == [[todo[0], todo[1]], [todo[2], todo[3]], [todo[4]]]
    assert batches(todo, 8) == [todo[:4], todo[4:]]
    assert batches(todo, 1) == [[item] for item in todo]
    assert batches([], 4) == []
