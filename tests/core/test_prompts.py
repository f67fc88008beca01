"""The prompt builders and the input checks, against hand-written strings."""

import re

import pytest
import torch

from dreammix_core.attributes.prompts import check_class_word, edit_prompt, instance_prompt
from dreammix_core.errors import DreamMixInputError
from dreammix_core.inpainting.region import validate_image_and_mask


def test_edit_prompt_by_hand() -> None:
    assert (
        edit_prompt("Backpack", " bright  red ", "on the  grass") == "a photo of a bright red sks backpack on the grass"
    )
    assert edit_prompt("dog", "") == "a photo of a sks dog"
    assert edit_prompt(" golden  retriever ", "wet", "") == "a photo of a wet sks golden retriever"


def test_instance_prompt_by_hand() -> None:
    assert instance_prompt(" Dog ") == "a photo of a sks dog"


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("  ", "Type the subject's class word, e.g. 'backpack' or 'dog'."),
        ("sks dog", "The class word must not contain the identifier 'sks'."),
    ],
)
def test_class_word_refusals(word: str, says: str) -> None:
    with pytest.raises(DreamMixInputError, match="^" + re.escape(says) + "$"):
        check_class_word(word)
    assert check_class_word("whisks") == "whisks"  # 'sks' inside a word is not the identifier


def test_image_and_mask_checks_name_the_shapes() -> None:
    image = torch.rand(1, 20, 40, 3)
    mask = torch.zeros(20, 40)
    mask[5:10, 5:10] = 0.5  # 0.5 counts as masked
    assert torch.equal(validate_image_and_mask(image, mask), (mask >= 0.5).float()[None])
    split = "each mask gets its own crop. Split the batch, e.g. with 'Image From Batch'."
    cases = [
        (torch.rand(20, 40, 3), mask, "Expected an IMAGE of shape (batch, height, width, 3), got (20, 40, 3)."),
        (torch.rand(1, 20, 40, 2), mask, "Expected an IMAGE of shape (batch, height, width, 3), got (1, 20, 40, 2)."),
        (image, torch.ones(1, 1, 20, 40), "Expected a MASK of shape (batch, height, width), got (1, 1, 20, 40)."),
        (
            torch.rand(2, 20, 40, 3),
            mask,
            f"DreamMix inpaints one image at a time (image batch 2, mask batch 1): {split}",
        ),
        (image, torch.ones(3, 20, 40), f"DreamMix inpaints one image at a time (image batch 1, mask batch 3): {split}"),
        (
            image,
            torch.full((1, 20, 40), 0.49),
            "The mask is empty: paint the area where the subject should go (values of 0.5 or more count as masked). "
            "Load Image gives an empty mask when the image has no alpha channel: paint one in the mask editor or "
            "use Load Image (as Mask).",
        ),
        (image, torch.ones(1, 20, 30), "The mask is 30x20 but the image is 40x20: they must be the same size."),
    ]
    for bad_image, bad_mask, says in cases:
        with pytest.raises(DreamMixInputError, match="^" + re.escape(says) + "$"):
            validate_image_and_mask(bad_image, bad_mask)
