"""Scoring finished images with the paper's metrics and writing the results table (CSV and Markdown)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dreammix_core.errors import DreamMixInputError

from .cases import Case
from .runner import image_path

METRIC_COLUMNS = ("CLIP-T", "CLIP-I", "DINO")


@dataclass
class Table:
    rows: list[tuple[str, int, Any]]
    """(case, images scored, Scores or None)."""
    mean: Any
    notes: list[str]


def _load_models(clip_source: str, dino_source: str, device: str, allow_download: bool) -> tuple[Any, Any, list[str]]:
    from dreammix_core.evaluation.metrics import cached_metric_model

    loaded, notes = [], []
    for kind, source, columns in (("clip", clip_source, "CLIP-T and CLIP-I"), ("dino", dino_source, "DINO")):
        if not source:
            loaded.append(None)
            notes.append(f"{columns}: not computed (no {kind.upper()} model given).")
            continue
        try:
            loaded.append(cached_metric_model(kind, source, device=device, allow_download=allow_download))
        except DreamMixInputError as error:
            loaded.append(None)
            notes.append(f"{columns}: not computed, the model is not available. {error}")
    return loaded[0], loaded[1], notes


def score_cases(
    cases: Sequence[Case],
    seeds: Sequence[int],
    out: Path,
    clip_source: str,
    dino_source: str,
    *,
    device: str = "cpu",
    allow_download: bool = False,
) -> tuple[Table, list[dict[str, Any]]]:
    """The table (one row per case, metrics averaged over its seeds) and a row per scored image."""
    try:
        from dreammix_core.evaluation.metrics import clip_t_text, mean_scores, score
    except ImportError as error:  # torch or transformers missing from this python
        return Table([(c.name, 0, None) for c in cases], None, [f"No metrics: {error}."]), []
    clip, dino = (None, None)
    notes: list[str] = []
    if clip_source or dino_source:
        clip, dino, notes = _load_models(clip_source, dino_source, device, allow_download)
    else:
        notes.append("No metrics: no CLIP or DINO model given.")
    rows, per_image, case_scores = [], [], []
    no_refs = [case.name for case in cases if not case.references]
    if no_refs and (clip or dino):
        notes.append(f"CLIP-I and DINO need reference photos; none for: {', '.join(no_refs)}.")
    for case in cases:
        done = [(seed, image_path(out, case, seed)) for seed in seeds if image_path(out, case, seed).is_file()]
        if not done or not (clip or dino):
            rows.append((case.name, len(done), None))
            continue
        clip_t_text(case.prompt, case.class_word)  # a prompt with 'sks' and no class word fails with its message
        references = []
        for path in case.references:
            with Image.open(path) as image:
                references.append(image.convert("RGB"))
        with Image.open(case.mask) as mask_image:
            mask = np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0
        scores = []
        for seed, path in done:
            with Image.open(path) as result:
                result = result.convert("RGB")
            image_scores = score(result, mask, references, case.prompt, case.class_word, clip=clip, dino=dino)
            scores.append(image_scores)
            per_image.append({"case": case.name, "seed": seed, "image": str(path), "scores": image_scores})
        case_mean = mean_scores(scores)
        case_scores.append(case_mean)
        rows.append((case.name, len(done), case_mean))
    mean = mean_scores(case_scores) if case_scores else None
    return Table(rows, mean, notes), per_image


def _cell(scores: Any, column: str, digits: int) -> str:
    if scores is None:
        return ""
    value = {"CLIP-T": scores.clip_t, "CLIP-I": scores.clip_i, "DINO": scores.dino}[column]
    return "" if value is None else f"{value:.{digits}f}"


def table_markdown(table: Table) -> str:
    lines = ["| case | images | CLIP-T | CLIP-I | DINO |", "|---|---|---|---|---|"]
    for name, count, scores in table.rows:
        lines.append(f"| {name} | {count} | " + " | ".join(_cell(scores, c, 3) for c in METRIC_COLUMNS) + " |")
    total = sum(count for _, count, _ in table.rows)
    lines.append(f"| **mean** | {total} | " + " | ".join(_cell(table.mean, c, 3) for c in METRIC_COLUMNS) + " |")
    text = "\n".join(lines) + "\n"
    if table.notes:
        text += "\n" + "\n".join(f"- {note}" for note in table.notes) + "\n"
    return text


def write_results(out: Path, table: Table, per_image: list[dict[str, Any]]) -> None:
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "images", *METRIC_COLUMNS])
        for name, count, scores in table.rows:
            writer.writerow([name, count, *(_cell(scores, c, 4) for c in METRIC_COLUMNS)])
        total = sum(count for _, count, _ in table.rows)
        writer.writerow(["mean", total, *(_cell(table.mean, c, 4) for c in METRIC_COLUMNS)])
    with open(out / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "seed", "image", *METRIC_COLUMNS])
        for row in per_image:
            writer.writerow(
                [row["case"], row["seed"], row["image"], *(_cell(row["scores"], c, 4) for c in METRIC_COLUMNS)]
            )
    header = (
        "# DreamMix batch results\n\nRaw cosine similarities as in the paper's Table 1: CLIP-T (image vs prompt, "
        "'sks' replaced by the class word), CLIP-I and DINO (the mask's bounding box vs each reference photo, "
        "averaged). Each case row averages its seeds; the mean row averages the cases.\n\n"
    )
    (out / "results.md").write_text(header + table_markdown(table))
