"""Bézier mask augmentation of method.md §4, as the released code's `extend_mask_with_bezier` does it.

Every connected part of the object mask (the released code's external contours, 8-connected) gets
its own blob around its bounding box (x, y, w, h): four quadratic Bézier curves from corner to
corner, clockwise from the top-left, each with its control point at the middle of its side pushed
outward — by r·h for the top and bottom curves, by r·w for the left and right ones — and clamped to
the image. r is drawn once per augmented copy from {0.1, 0.2, …, 1.0}. Each curve is sampled at
t = 0.05, 0.10, …, 0.95, every point moved by an integer offset in [-j, j] in x and in y, j drawn
once per copy from [1, 20], and the polygons are filled and joined. All randomness comes from the
torch.Generator passed in, so a seed fixes the blob.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import DreamMixInputError
from ..masks import is_masked

R_CHOICES = tuple(round(0.1 * k, 1) for k in range(1, 11))
"""The push factors r: 0.1 … 1.0."""
JITTER_RANGE = (1, 20)
"""j is drawn uniformly from this closed range of integer pixels."""
CURVE_T = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Where each curve is sampled (the released code's `i * 0.05` for i in 1 … 19)."""

Box = tuple[int, int, int, int]
"""(x, y, w, h): left, top, width and height in pixels, as OpenCV's boundingRect gives them."""


def part_boxes(mask: np.ndarray) -> list[Box]:
    """The bounding box of each 8-connected part of a boolean (H, W) mask, in raster order of their first pixel.

    Labels runs of set pixels row by row and joins runs of neighbouring rows that touch, diagonals
    included (union-find), so the cost grows with the number of runs, not of pixels.
    """
    runs: list[tuple[int, int, int]] = []  # (row, start, end) with end exclusive
    for row, line in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], line.astype(np.int8), [0]))))
        runs += [(row, int(start), int(end)) for start, end in zip(edges[::2], edges[1::2])]
    parent = list(range(len(runs)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    previous: list[int] = []  # indices of the runs of the row above
    current: list[int] = []
    for index, (row, start, end) in enumerate(runs):
        if current and runs[current[0]][0] != row:
            previous, current = (current if runs[current[0]][0] == row - 1 else []), []
        for other in previous:
            if runs[other][1] <= end and start <= runs[other][2]:  # overlapping or diagonal neighbours
                parent[root(other)] = root(index)
        current.append(index)
    boxes: dict[int, list[int]] = {}
    for index, (row, start, end) in enumerate(runs):
        box = boxes.setdefault(root(index), [start, row, end, row])
        box[0], box[2], box[3] = min(box[0], start), max(box[2], end), row
    ordered = sorted(boxes.values(), key=lambda b: (b[1], b[0]))
    return [(left, top, right - left, bottom + 1 - top) for left, top, right, bottom in ordered]


def _curve(start: tuple[float, float], control: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    t = np.asarray(CURVE_T)[:, None]
    return (1 - t) ** 2 * np.asarray(start) + 2 * (1 - t) * t * np.asarray(control) + t**2 * np.asarray(end)


def part_outline(box: Box, r: float, width: int, height: int) -> np.ndarray:
    """The un-jittered outline (76, 2) of x, y points around one part's box, control points clamped to the image."""
    x, y, w, h = box
    top, bottom = max(0, y - int(r * h)), min(height, y + h + int(r * h))
    left, right = max(0, x - int(r * w)), min(width, x + w + int(r * w))
    middle_x, middle_y = (2 * x + w) // 2, (2 * y + h) // 2
    curves = [
        _curve((x, y), (middle_x, top), (x + w, y)),
        _curve((x + w, y), (right, middle_y), (x + w, y + h)),
        _curve((x + w, y + h), (middle_x, bottom), (x, y + h)),
        _curve((x, y + h), (left, middle_y), (x, y)),
    ]
    return np.concatenate(curves)


def bezier_blob(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A (H, W) float {0, 1} union of one blob per part of `mask` (H, W); the whole image if the mask is empty."""
    if mask.ndim != 2:
        raise DreamMixInputError(f"A subject mask must be one 2-D mask, got shape {tuple(mask.shape)}.")
    height, width = mask.shape
    boxes = part_boxes(is_masked(mask).cpu().numpy())
    if not boxes:
        return torch.ones(height, width)
    r = R_CHOICES[int(torch.randint(len(R_CHOICES), (), generator=generator))]
    jitter = int(torch.randint(JITTER_RANGE[0], JITTER_RANGE[1] + 1, (), generator=generator))
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for box in boxes:
        outline = part_outline(box, r, width, height)
        offsets = torch.randint(-jitter, jitter + 1, outline.shape, generator=generator).numpy()
        points = (outline + offsets).astype(np.int64)  # the released int(point + offset), truncating
        draw.polygon([(int(px), int(py)) for px, py in points], fill=255)
    blob = np.asarray(canvas) > 127
    return torch.from_numpy(blob).float()
