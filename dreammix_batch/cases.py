"""Case folders: `<cases>/<name>/` with scene.png, mask.png (white = subject) and prompt.txt, checked up front."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dreammix_core.errors import DreamMixInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CASE_FILES = ("scene.png", "mask.png", "prompt.txt")


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    prompt: str
    references: tuple[Path, ...] = ()
    class_word: str = ""

    @property
    def scene(self) -> Path:
        return self.folder / "scene.png"

    @property
    def mask(self) -> Path:
        return self.folder / "mask.png"


def _images_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))


def _image_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
    if path.is_dir():
        problems.append(f"{path}: is a folder, not an image")
        return None
    if not path.is_file():
        problems.append(f"{path}: missing")
        return None
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except Exception as error:  # PIL raises several types for unreadable files
        problems.append(f"{path}: not a readable image ({error})")
        return None


def _case_references(folder: Path, name: str, references: Path | None) -> tuple[Path, ...]:
    """The case's own `references/`, else `REFERENCES/<case>/`, else the images in `REFERENCES`."""
    for candidate in (folder / "references", None if references is None else references / name):
        if candidate is not None and candidate.is_dir():
            return _images_in(candidate)
    return () if references is None else _images_in(references)


def load_cases(cases_dir: str | Path, references: str | Path | None = None, class_word: str = "") -> list[Case]:
    """Every case folder under `cases_dir`, checked; one DreamMixInputError lists every problem by file."""
    cases_dir = Path(cases_dir)
    if not cases_dir.is_dir():
        raise DreamMixInputError(f"The cases folder '{cases_dir}' does not exist.")
    refs_dir = None if references is None else Path(references)
    if refs_dir is not None and not refs_dir.is_dir():
        raise DreamMixInputError(f"The references folder '{refs_dir}' does not exist.")
    folders = sorted(p for p in cases_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DreamMixInputError(
            f"'{cases_dir}' holds no case folders: put each case in <cases>/<name>/ with {', '.join(CASE_FILES)}."
        )
    cases, problems = [], []
    for folder in folders:
        found: list[str] = []
        scene_size = _image_size(folder / "scene.png", found)
        mask_size = _image_size(folder / "mask.png", found)
        if scene_size and mask_size:
            if scene_size != mask_size:
                found.append(
                    f"{folder / 'mask.png'}: is {mask_size[0]}x{mask_size[1]} but scene.png is "
                    f"{scene_size[0]}x{scene_size[1]}; the mask must have the scene's size"
                )
            else:
                with Image.open(folder / "mask.png") as mask:
                    if not (np.asarray(mask.convert("L")) >= 128).any():
                        found.append(f"{folder / 'mask.png'}: is empty (no white pixel marks where the subject goes)")
        prompt_path = folder / "prompt.txt"
        prompt = ""
        if not prompt_path.is_file():
            found.append(f"{prompt_path}: missing")
        else:
            prompt = " ".join(prompt_path.read_text(encoding="utf-8", errors="replace").split())
            if not prompt:
                found.append(f"{prompt_path}: is empty; write the prompt for this case in it")
        word_path = folder / "class_word.txt"
        word = " ".join(word_path.read_text().split()) if word_path.is_file() else " ".join(class_word.split())
        problems += found
        if not found:
            cases.append(Case(folder.name, folder, prompt, _case_references(folder, folder.name, refs_dir), word))
    if problems:
        raise DreamMixInputError("Malformed case folders:\n  " + "\n  ".join(problems))
    return cases


def scene_with_alpha(case: Case) -> bytes:
    """The scene as an RGBA PNG whose alpha is 255 - mask: transparent where the subject goes."""
    with Image.open(case.scene) as scene, Image.open(case.mask) as mask:
        rgba = scene.convert("RGB")
        rgba.putalpha(Image.fromarray(255 - np.asarray(mask.convert("L"))))
    data = io.BytesIO()
    rgba.save(data, format="PNG")
    return data.getvalue()
