"""Subject photos for training: pairs checked one by one, each photo kept at its own size."""

import re

import pytest
import torch

from dreammix_core.errors import DreamMixInputError
from dreammix_core.training.subject_photos import collect_photos


def photo(width: int, height: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(1, height, width, channels, generator=torch.Generator().manual_seed(width * height))


def alpha_mask(width: int, height: int) -> torch.Tensor:
    """Load Image's MASK of a cut-out subject: 0 on the opaque subject (a box), 1 on the transparent background."""
    mask = torch.ones(1, height, width)
    mask[:, height // 4 : height // 2, width // 4 : width // 2] = 0
    return mask


def test_photos_keep_their_sizes_and_order_and_masks_are_inverted() -> None:
    sizes = [(96, 80), (64, 64), (50, 120)]
    images, masks = collect_photos([(photo(*s), alpha_mask(*s)) for s in sizes], invert_masks=True)
    assert [tuple(image.shape) for image in images] == [(1, h, w, 3) for w, h in sizes]
    assert [tuple(mask.shape) for mask in masks] == [(1, h, w) for w, h in sizes]
    assert all(torch.equal(image, photo(*s)) for image, s in zip(images, sizes))
    assert all(torch.equal(mask, 1 - alpha_mask(*s)) for mask, s in zip(masks, sizes))


def test_masks_are_kept_without_inversion_and_unconnected_photos_are_skipped() -> None:
    mask = 1 - alpha_mask(64, 48)
    mask[0, 0, 0] = 0.3  # a soft value stays as it is
    pairs = [(photo(64, 48, channels=4), mask), (None, None), (photo(32, 40), torch.ones(1, 40, 32))]
    images, masks = collect_photos(pairs, invert_masks=False)
    assert [tuple(image.shape) for image in images] == [(1, 48, 64, 3), (1, 40, 32, 3)]
    assert torch.equal(masks[0], mask)


def test_a_single_unbatched_photo_is_accepted() -> None:
    images, masks = collect_photos([(photo(40, 30)[0], alpha_mask(40, 30)[0])], invert_masks=True)
    assert images[0].shape == (1, 30, 40, 3) and masks[0].shape == (1, 30, 40)


def whole(message: str) -> str:
    """A pattern matching exactly `message`."""
    return "^" + re.escape(message) + "$"


def test_image_without_mask() -> None:
    expected = (
        "Photo 2 has an image but no mask: connect mask_2 (Load Image's MASK output, or a segmentation node's mask)."
    )
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        collect_photos([(photo(8, 8), alpha_mask(8, 8)), (photo(8, 8), None)], invert_masks=True)


def test_mask_without_image() -> None:
    with pytest.raises(DreamMixInputError, match=whole("Photo 3 has a mask but no image: connect image_3.")):
        collect_photos([(photo(8, 8), alpha_mask(8, 8)), (None, None), (None, alpha_mask(8, 8))], invert_masks=True)


def test_mask_of_another_size_names_the_photo_both_sizes_and_the_64x64_mask() -> None:
    with pytest.raises(DreamMixInputError) as raised:
        collect_photos([(photo(96, 80), alpha_mask(96, 80)), (photo(120, 90), torch.zeros(1, 64, 64))], True)
    assert str(raised.value) == (
        "Photo 2: the mask is 64x64 but the image is 120x90; each photo needs a mask of its own size. Load Image "
        "gives a 64x64 empty mask for a photo without alpha channel: save the photo with the background "
        "transparent, or take the mask from a segmentation node."
    )


EMPTY_WITHOUT_INVERSION = (
    "Photo 1: the mask is empty (values of 0.5 or more mark the subject). With invert_masks off the mask must be 1 "
    "on the subject, as segmentation nodes give it; for Load Image's alpha mask (1 where transparent) turn "
    "invert_masks on."
)


@pytest.mark.parametrize(
    ("invert", "mask", "expected"),
    [
        (
            True,
            torch.ones(1, 16, 16),
            "Photo 1: the mask is empty after inversion (the photo is transparent everywhere). With invert_masks on, "
            "the subject must be opaque and the background transparent.",
        ),
        (False, torch.zeros(1, 16, 16), EMPTY_WITHOUT_INVERSION),
        (False, torch.full((1, 16, 16), 0.4), EMPTY_WITHOUT_INVERSION),
    ],
)
def test_empty_mask(invert: bool, mask: torch.Tensor, expected: str) -> None:
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        collect_photos([(photo(16, 16), mask)], invert_masks=invert)


def test_photo_without_transparency_is_not_taken_as_all_subject() -> None:
    """A 64x64 photo without alpha gets Load Image's 64x64 empty mask, which fits its size: inverted, it would
    mark the whole photo as the subject."""
    expected = (
        "Photo 1 has no transparent pixel, so with invert_masks on its mask would cover the whole photo (Load Image "
        "gives an empty mask for a photo without alpha channel). Save the photo with the background transparent, or "
        "connect a mask that is 1 on the subject and turn invert_masks off."
    )
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        collect_photos([(photo(64, 64), torch.zeros(1, 64, 64))], invert_masks=True)


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        (
            "image",
            "image_1 holds a batch of 3 images: each input takes one. Connect them to image_1, image_2, … one by one "
            "(split a batch with 'Image From Batch').",
        ),
        (
            "mask",
            "mask_1 holds a batch of 3 masks: each input takes one. Connect them to mask_1, mask_2, … one by one "
            "(split a batch with 'Image From Batch').",
        ),
    ],
)
def test_batches_are_refused(which: str, expected: str) -> None:
    image, mask = photo(16, 16), alpha_mask(16, 16)
    if which == "image":
        image = image.repeat(3, 1, 1, 1)
    else:
        mask = mask.repeat(3, 1, 1)
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        collect_photos([(image, mask)], invert_masks=True)


def test_not_an_image() -> None:
    with pytest.raises(DreamMixInputError, match=whole("image_1 should be a ComfyUI IMAGE, got shape (1, 16, 16, 2).")):
        collect_photos([(photo(16, 16, channels=2), alpha_mask(16, 16))], invert_masks=True)
