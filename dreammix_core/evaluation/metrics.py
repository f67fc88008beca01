"""The paper's metrics (method.md §5): CLIP-T, CLIP-I and DINO, as raw cosine similarities.

- **CLIP-T**: the generated image against its prompt, with the identifier 'sks' replaced by the
  class word ('a photo of a sks backpack' → 'a photo of a backpack'), since CLIP has never seen the
  identifier.
- **CLIP-I** and **DINO**: the generated subject against each reference photo of the subject,
  averaged over the references. The subject is the bounding-box crop of the mask in the result.
  DINO's embedding is the class token of the last hidden state, as in DreamBooth's evaluation.

Models come from a local folder or a Hugging Face id, and are loaded once per source. A Hub id is
looked up in the local cache only, unless `allow_download`: loading never waits on the network.
Image processors are the PIL ones, so no torchvision is needed and results do not depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image

from ..attributes.prompts import IDENTIFIER
from ..errors import DreamMixInputError
from ..masks import mask_bbox
from ..model_cache import ModelCache
from ..model_source import local_model_folder

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_DINO = "facebook/dino-vits16"

_KIND_NAMES = {"clip": "CLIP", "dino": "DINO"}
_DEFAULTS = {"clip": DEFAULT_CLIP, "dino": DEFAULT_DINO}


@dataclass(frozen=True)
class Scores:
    """One generated image's metrics; None where a metric could not be computed (no references)."""

    clip_t: float | None
    clip_i: float | None
    dino: float | None

    def line(self) -> str:
        def show(value: float | None) -> str:
            return "—" if value is None else f"{value:.3f}"

        return f"CLIP-T {show(self.clip_t)} | CLIP-I {show(self.clip_i)} | DINO {show(self.dino)}"


@dataclass
class MetricModel:
    """A loaded CLIP or DINO model with its PIL image processor (and, for CLIP, its tokenizer)."""

    kind: str
    source: str
    model: Any
    image_processor: Any
    tokenizer: Any = None


# --- the text and the subject region ------------------------------------------------------


def clip_t_text(prompt: str, class_word: str) -> str:
    """The prompt CLIP-T scores against: 'sks <class>' becomes '<class>', any other 'sks' the class word."""
    prompt = " ".join(str(prompt).split())
    if not prompt:
        raise DreamMixInputError("The prompt is empty: CLIP-T needs the prompt the image was generated from.")
    word = " ".join(str(class_word).split())
    identifier = re.compile(rf"\b{IDENTIFIER}\b", re.IGNORECASE)
    if not identifier.search(prompt):
        return prompt
    if not word:
        raise DreamMixInputError(
            f"The prompt '{prompt}' contains the identifier '{IDENTIFIER}': give the class word ('dog', "
            f"'backpack') that replaces it for CLIP-T."
        )
    if identifier.search(word):
        raise DreamMixInputError(f"The class word must not contain the identifier '{IDENTIFIER}'.")
    prompt = re.sub(rf"\b{IDENTIFIER}\s+(?={re.escape(word)}\b)", "", prompt, flags=re.IGNORECASE)
    return " ".join(identifier.sub(word, prompt).split())


def _mask_array(mask: Any) -> np.ndarray:
    if isinstance(mask, Image.Image):
        array = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    else:
        array = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=np.float32)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise DreamMixInputError(f"The mask must be one HxW mask; got an array of shape {tuple(array.shape)}.")
    return array


def subject_box(mask: Any) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), right and bottom exclusive: the bounding box of the mask's subject pixels."""
    box = mask_bbox(torch.from_numpy(_mask_array(mask)))
    if box is None:
        raise DreamMixInputError(
            "The mask is empty (no value of 0.5 or more): the identity metrics need the subject's region."
        )
    return box


def subject_crop(image: Image.Image, mask: Any) -> Image.Image:
    """The generated subject: the result cropped to the mask's bounding box."""
    array = _mask_array(mask)
    if array.shape != (image.height, image.width):
        raise DreamMixInputError(
            f"The mask is {array.shape[1]}x{array.shape[0]} but the image is {image.width}x{image.height}: "
            f"give the mask the image was inpainted with."
        )
    return image.convert("RGB").crop(subject_box(array))


# --- loading --------------------------------------------------------------------------------


def _pil_image_processor(folder: str) -> Any:
    """The image processor on the PIL backend (transformers 5: backend='pil'; 4.x: use_fast=False)."""
    major = int(transformers.__version__.split(".")[0])
    options = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    return transformers.AutoImageProcessor.from_pretrained(folder, **options)


def load_metric_model(
    kind: str,
    source: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_download: bool = False,
) -> MetricModel:
    """Loads a CLIP ('clip') or DINO ('dino') model from a folder or Hub id, in eval mode; not cached."""
    if kind not in _KIND_NAMES:
        raise ValueError(f"kind must be 'clip' or 'dino', not {kind!r}")
    name = _KIND_NAMES[kind]
    source = str(source or "").strip() or _DEFAULTS[kind]
    folder = str(local_model_folder(source, f"{name} model", _DEFAULTS[kind], allow_download))
    try:
        config = transformers.AutoConfig.from_pretrained(folder)
        if kind == "clip" and not (hasattr(config, "text_config") and hasattr(config, "vision_config")):
            raise DreamMixInputError(
                f"'{source}' is a {config.model_type} model, not a CLIP model with image and text towers "
                f"(e.g. '{DEFAULT_CLIP}')."
            )
        image_processor = _pil_image_processor(folder)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder) if kind == "clip" else None
        options: dict[str, Any] = {"dtype": dtype}
        if kind == "dino" and config.model_type == "vit":
            options["add_pooling_layer"] = False  # only the class token is used; DINO has no pooler weights
        model = transformers.AutoModel.from_pretrained(folder, **options)
    except DreamMixInputError:  # ours, already saying what is wrong (it is a ValueError too)
        raise
    except (OSError, ValueError, KeyError) as error:
        raise DreamMixInputError(f"Could not load the {name} model from '{source}': {error}") from error
    if kind == "clip" and not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise DreamMixInputError(
            f"'{source}' is a {type(model).__name__}, not a CLIP model with image and text towers "
            f"(e.g. '{DEFAULT_CLIP}')."
        )
    return MetricModel(kind, source, model.to(device).eval(), image_processor, tokenizer)


_CACHE: ModelCache[MetricModel] = ModelCache(size=4)


def cached_metric_model(
    kind: str,
    source: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_download: bool = False,
) -> MetricModel:
    """`load_metric_model`, reused across calls: cached by kind, source, device and dtype."""
    source = str(source or "").strip() or _DEFAULTS.get(kind, "")
    return _CACHE.get(
        (kind, source, str(device), str(dtype)),
        lambda: load_metric_model(kind, source, device=device, dtype=dtype, allow_download=allow_download),
    )


# --- embeddings -----------------------------------------------------------------------------


def _features(output: Any) -> torch.Tensor:
    """transformers 4.x returns the projected features; 5.x a model output with them as pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _model_place(model: Any) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def _pixels(loaded: MetricModel, images: Sequence[Image.Image]) -> torch.Tensor:
    device, dtype = _model_place(loaded.model)
    rgb = [image.convert("RGB") for image in images]
    return loaded.image_processor(images=rgb, return_tensors="pt")["pixel_values"].to(device, dtype)


def image_embeddings(loaded: MetricModel, images: Sequence[Image.Image]) -> torch.Tensor:
    """One float32 embedding per image: CLIP's projected image features, or DINO's last-layer class token."""
    if not images:
        raise DreamMixInputError("No images to embed.")
    with torch.inference_mode():
        pixels = _pixels(loaded, images)
        if loaded.kind == "clip":
            embedding = _features(loaded.model.get_image_features(pixel_values=pixels))
        else:
            embedding = loaded.model(pixel_values=pixels).last_hidden_state[:, 0]
    return embedding.float().cpu()


def text_embeddings(loaded: MetricModel, texts: Sequence[str]) -> torch.Tensor:
    """CLIP's projected text features, the texts truncated to the text tower's length as CLIP does."""
    if loaded.kind != "clip":
        raise ValueError("text embeddings need the CLIP model")
    device, _ = _model_place(loaded.model)
    length = loaded.model.config.text_config.max_position_embeddings
    tokens = loaded.tokenizer(list(texts), padding=True, truncation=True, max_length=length, return_tensors="pt")
    with torch.inference_mode():
        features = loaded.model.get_text_features(
            input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
        )
    return _features(features).float().cpu()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Raw cosine similarity of every row of `a` with every row of `b` (no 100x or clipping, as the paper)."""
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    return a @ b.T


# --- the metrics ----------------------------------------------------------------------------


def clip_t(clip: MetricModel, image: Image.Image, prompt: str, class_word: str = "") -> float:
    """CLIP-T: the whole generated image against the prompt with 'sks' replaced by the class word."""
    text = clip_t_text(prompt, class_word)
    return float(cosine(image_embeddings(clip, [image]), text_embeddings(clip, [text]))[0, 0])


def identity_similarity(loaded: MetricModel, subject: Image.Image, references: Sequence[Image.Image]) -> float:
    """CLIP-I or DINO: the subject crop against each reference photo, averaged."""
    if not references:
        raise DreamMixInputError("Give at least one reference photo of the subject for CLIP-I and DINO.")
    return float(cosine(image_embeddings(loaded, [subject]), image_embeddings(loaded, references)).mean())


def score(
    result: Image.Image,
    mask: Any,
    references: Sequence[Image.Image],
    prompt: str,
    class_word: str = "",
    *,
    clip: MetricModel | None = None,
    dino: MetricModel | None = None,
) -> Scores:
    """The three metrics for one generated image; a metric is None when its model (or the references) is missing."""
    subject = subject_crop(result, mask) if references and (clip is not None or dino is not None) else None
    return Scores(
        clip_t=None if clip is None else clip_t(clip, result, prompt, class_word),
        clip_i=None if clip is None or subject is None else identity_similarity(clip, subject, references),
        dino=None if dino is None or subject is None else identity_similarity(dino, subject, references),
    )


def mean_scores(scores: Sequence[Scores]) -> Scores:
    """The mean of each metric over the images that have it (None if none has it)."""

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present else None

    return Scores(mean([s.clip_t for s in scores]), mean([s.clip_i for s in scores]), mean([s.dino for s in scores]))
