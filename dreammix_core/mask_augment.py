"""Bézier mask augmentation of method.md §4: an object mask becomes a blob around its bounding box.

The blob is bounded by four quadratic Bézier curves running corner to corner around the box
(top-left → top-right → bottom-right → bottom-left → top-left). Each curve's control point starts
at the middle of the side it replaces and is pushed outward, perpendicular to that side, by
r × the length of that side, r drawn per curve from {0.1, 0.2, …, 1.0}. (method.md says "r × the
box side"; this reads it as the side the curve replaces. A quadratic curve bulges by half its
control offset, so a side bulges by at most half its own length.) Every sampled curve point is then
moved by an integer offset in [-j, j] pixels in x and y, j drawn once per blob uniformly from
[1, 20]; the closed polygon is filled with PIL and clipped to the image. All randomness comes from
the torch.Generator passed in, so a seed fixes the blob.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from .errors import DreamMixInputError

R_CHOICES = tuple(round(0.1 * k, 1) for k in range(1, 11))
"""The push factors r: 0.1 … 1.0."""
JITTER_RANGE = (1, 20)
"""j is drawn uniformly from this closed range of integer pixels."""
POINTS_PER_CURVE = 48


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels > 0.5 of a (H, W) mask, right/bottom exclusive; None if empty."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def bezier_outline(
    box: tuple[int, int, int, int], generator: torch.Generator, points_per_curve: int = POINTS_PER_CURVE
) -> torch.Tensor:
    """The jittered closed outline (N, 2) of x, y points for a (left, top, right, bottom) box."""
    left, top, right, bottom = (float(v) for v in box)
    width, height = right - left, bottom - top
    # corners in order, and for the side from each corner to the next: its outward normal and length
    corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
    normals = [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)]
    lengths = [width, height, width, height]
    t = torch.linspace(0, 1, points_per_curve + 1)[:-1, None]  # the next curve starts at the shared corner
    curves = []
    for k in range(4):
        start, end = torch.tensor(corners[k]), torch.tensor(corners[(k + 1) % 4])
        r = R_CHOICES[int(torch.randint(len(R_CHOICES), (), generator=generator))]
        control = (start + end) / 2 + torch.tensor(normals[k]) * r * lengths[k]
        curves.append((1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end)
    outline = torch.cat(curves)
    jitter = int(torch.randint(JITTER_RANGE[0], JITTER_RANGE[1] + 1, (), generator=generator))
    offsets = torch.randint(-jitter, jitter + 1, outline.shape, generator=generator).float()
    return outline + offsets


def bezier_blob(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A (H, W) float {0, 1} blob around the bounding box of `mask` (H, W); the whole image if the mask is empty."""
    if mask.ndim != 2:
        raise DreamMixInputError(f"A subject mask must be one 2-D mask, got shape {tuple(mask.shape)}.")
    height, width = mask.shape
    box = mask_bbox(mask)
    if box is None:
        return torch.ones(height, width)
    outline = bezier_outline(box, generator)
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in outline.tolist()], fill=255)
    blob = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).reshape(height, width)
    return (blob > 127).float()
