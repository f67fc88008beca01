"""The ADM training set of method.md §4: augmented subject and regular copies, mixed 0.3 / 0.7.

A subject photo (any size) is expanded into `subject_copies` (10) copies and a regular image into
`regular_copies` (3). Each copy is the image resized so its short side is the training resolution,
cropped to a square of that side at a random position (subject copies keep the object's box inside
the crop when it fits, regular copies crop anywhere), with its mask replaced by a Bézier blob
around the cropped object's box (`mask_augment`). Training draws one copy per micro-step: a regular
one with probability `regular_probability` (if there are any), else a subject one, uniformly within
the group. All randomness comes from torch.Generators seeded from one seed, so the set and the order
of draws are reproducible; a draw depends only on (seed, step index), which makes resuming exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DreamMixInputError
from ..masks import binarize, mask_bbox
from .mask_augment import bezier_blob

SUBJECT_COPIES = 10
REGULAR_COPIES = 3
REGULAR_PROBABILITY = 0.3


@dataclass(frozen=True)
class Photo:
    """One source image: (H, W, 3) floats in [0, 1], its (H, W) object mask, and the index of its prompt."""

    image: torch.Tensor
    mask: torch.Tensor
    prompt: int


@dataclass(frozen=True)
class Copy:
    """One augmented training copy: (3, R, R) image, (1, R, R) Bézier mask, prompt index, group."""

    image: torch.Tensor
    mask: torch.Tensor
    prompt: int
    regular: bool


def check_photo(image: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if image.ndim != 3 or image.shape[-1] < 3:
        raise DreamMixInputError(f"{what}: expected one RGB image, got shape {tuple(image.shape)}.")
    if mask.shape != image.shape[:2]:
        raise DreamMixInputError(
            f"{what}: the mask is {mask.shape[-1]}×{mask.shape[-2]} but the image is "
            f"{image.shape[1]}×{image.shape[0]}; give each photo a mask of its own size."
        )


def resize_short_side(image: torch.Tensor, mask: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, h, w) image and (1, h, w) mask with min(h, w) == side, from (H, W, 3) and (H, W)."""
    height, width = mask.shape
    scale = side / min(height, width)
    size = (max(side, round(height * scale)), max(side, round(width * scale)))
    chw = image[..., :3].permute(2, 0, 1)[None].float()
    resized = F.interpolate(chw, size=size, mode="bicubic", align_corners=False, antialias=scale < 1).clamp(0, 1)
    resized_mask = F.interpolate(mask[None, None].float(), size=size, mode="bilinear", align_corners=False)
    return resized[0], binarize(resized_mask[0])


def crop_offset(extent: int, side: int, keep: tuple[int, int] | None, generator: torch.Generator) -> int:
    """A random start of a `side` window on an axis of length `extent`, keeping [keep) inside when it fits."""
    low, high = 0, extent - side
    if keep is not None:
        begin, end = keep
        if end - begin <= side:
            low, high = max(low, end - side), min(high, begin)
        else:  # the object is larger than the crop: centre on it
            low = high = min(max((begin + end - side) // 2, 0), extent - side)
    return low + int(torch.randint(high - low + 1, (), generator=generator))


def augment(photo: Photo, side: int, keep_object: bool, regular: bool, generator: torch.Generator) -> Copy:
    """One augmented copy: short-side resize, random square crop, Bézier mask."""
    image, mask = resize_short_side(photo.image, photo.mask, side)
    box = mask_bbox(mask[0])
    keep_x = (box[0], box[2]) if keep_object and box else None
    keep_y = (box[1], box[3]) if keep_object and box else None
    top = crop_offset(mask.shape[1], side, keep_y, generator)
    left = crop_offset(mask.shape[2], side, keep_x, generator)
    image = image[:, top : top + side, left : left + side]
    mask = mask[:, top : top + side, left : left + side]
    return Copy(image.contiguous(), bezier_blob(mask[0], generator)[None], photo.prompt, regular)


def expand(
    subject: list[Photo],
    regular: list[Photo],
    side: int,
    seed: int,
    subject_copies: int = SUBJECT_COPIES,
    regular_copies: int = REGULAR_COPIES,
) -> list[Copy]:
    """All augmented copies, subject ones first, deterministic for a seed."""
    if not subject:
        raise DreamMixInputError("Give at least one subject photo with its mask.")
    if side < 64 or side % 64:
        raise DreamMixInputError(f"The training resolution must be a multiple of 64 of at least 64, got {side}.")
    generator = torch.Generator().manual_seed(seed)
    for i, photo in enumerate(subject):
        check_photo(photo.image, photo.mask, f"subject photo {i + 1}")
        if mask_bbox(photo.mask) is None:
            raise DreamMixInputError(
                f"The mask of subject photo {i + 1} is empty: the mask must be 1 on the subject "
                "(connect a segmentation mask, or invert LoadImage's alpha mask)."
            )
    copies = [augment(p, side, True, False, generator) for p in subject for _ in range(subject_copies)]
    copies += [augment(p, side, False, True, generator) for p in regular for _ in range(regular_copies)]
    return copies


@dataclass(frozen=True)
class MixSampler:
    """Draws copy indices: regular with probability `regular_probability` (when there are any), else subject."""

    subject_count: int
    regular_count: int
    regular_probability: float = REGULAR_PROBABILITY

    def draw(self, generator: torch.Generator) -> int:
        regular = self.regular_count > 0 and float(torch.rand((), generator=generator)) < self.regular_probability
        if regular:
            return self.subject_count + int(torch.randint(self.regular_count, (), generator=generator))
        return int(torch.randint(self.subject_count, (), generator=generator))


def step_generator(seed: int, micro_step: int) -> torch.Generator:
    """The generator of one micro-step: a function of (seed, index) only, so a resumed run draws the same."""
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_step * 7_919 + 12_345) % (2**63 - 1))


def background_difference_mask(image: torch.Tensor, threshold: float = 0.15, border: int = 4) -> torch.Tensor:
    """Object mask of an image generated on a plain background: pixels whose colour is far from the border's.

    The background colour is the per-channel median of a `border`-pixel frame; a pixel is object when
    its RGB distance to it exceeds `threshold` (in [0, 1] units, divided by √3). The result is closed
    (dilate then erode, 2 % of the short side) to fill speckles. If that finds under 2 % or over 90 % of
    the image (no plain background), it falls back to a centred ellipse over half the width and height.
    `image` is (H, W, 3) in [0, 1]; returns (H, W) in {0, 1}.
    """
    height, width = image.shape[:2]
    rgb = image[..., :3].float()
    frame = torch.cat(
        [
            rgb[:border].reshape(-1, 3),
            rgb[-border:].reshape(-1, 3),
            rgb[:, :border].reshape(-1, 3),
            rgb[:, -border:].reshape(-1, 3),
        ]
    )
    background = frame.median(dim=0).values
    distance = (rgb - background).norm(dim=-1) / 3**0.5
    mask = (distance > threshold).float()[None, None]
    radius = max(1, round(0.02 * min(height, width)))
    size = 2 * radius + 1
    mask = F.max_pool2d(mask, size, stride=1, padding=radius)
    mask = -F.max_pool2d(-mask, size, stride=1, padding=radius)
    mask = mask[0, 0]
    if not 0.02 <= float(mask.mean()) <= 0.9:
        ys = (torch.arange(height).float() + 0.5 - height / 2) / (height / 4)
        xs = (torch.arange(width).float() + 0.5 - width / 2) / (width / 4)
        mask = ((ys[:, None] ** 2 + xs[None] ** 2) <= 1).float()
    return mask
