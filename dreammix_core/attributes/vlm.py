"""The subject's attribute words from a local vision-language model (method.md §4, attribute decoupling).

DreamMix asks a VLM what the subject looks like (colour, material, texture, shape, pattern) and uses
the answer for TAS's original attributes and ADM's regular prompts. Any chat VLM that transformers
loads as image-text-to-text works; the answer is free text, so `attributes.parse_vlm_answer` turns it
into words and `describe_subject` merges the words over all subject images.

Loading never waits on the network unless asked: a Hub id is looked up in the local Hugging Face
cache, because ComfyUI often runs offline and transformers would otherwise retry for minutes.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import torch
import transformers
from PIL import Image

from ..errors import DreamMixInputError
from ..model_source import local_model_folder
from .prompts import VLM_QUESTION, check_class_word, parse_vlm_answer

_EXAMPLE_ID = "llava-hf/llava-interleave-qwen-0.5b-hf"


def _model_classes() -> list[Any]:
    """Auto classes to try, the image-text-to-text one first; the others only exist in some versions."""
    names = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")
    return [getattr(transformers, name) for name in names if hasattr(transformers, name)]


def load_vlm(
    source: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, *, allow_download: bool = False
) -> tuple[Any, Any]:
    """Loads a chat VLM and its processor from a local folder or a Hub id; the model is in eval mode.

    Raises DreamMixInputError, with what to do, when the folder holds no model, the id is not cached
    (and `allow_download` is off), or transformers cannot load it as an image-text model.
    """
    source = str(source).strip()
    if not source:
        raise DreamMixInputError(f"Give the VLM as a local folder or a Hugging Face id, e.g. '{_EXAMPLE_ID}'.")
    folder = str(local_model_folder(source, "VLM", _EXAMPLE_ID, allow_download))
    try:
        processor = transformers.AutoProcessor.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as error:
        raise DreamMixInputError(f"Could not load the VLM's processor from '{source}': {error}") from error
    kwargs = {} if dtype is None else {"dtype": dtype}
    errors = []
    for auto_class in _model_classes():
        try:
            model = auto_class.from_pretrained(folder, **kwargs)
        except ValueError as error:  # this auto class does not know the architecture: try the next one
            errors.append(f"{auto_class.__name__}: {error}")
            continue
        except OSError as error:  # missing or broken weight files
            raise DreamMixInputError(f"Could not load the VLM's weights from '{source}': {error}") from error
        return model.to(device).eval(), processor
    raise DreamMixInputError(
        f"'{source}' is not a vision-language model transformers can load for image-text generation. "
        + " | ".join(errors)
    )


def ask_vlm(model: Any, processor: Any, image: Image.Image, question: str, max_new_tokens: int = 48) -> str:
    """One greedy answer to `question` about `image`, through the processor's chat template.

    Greedy decoding makes the answer, and so the attributes and prompts, repeatable for a given model.
    Only the newly generated text comes back, without the prompt or special tokens.
    """
    if getattr(processor, "chat_template", None) is None:
        raise DreamMixInputError("The VLM's processor has no chat template; use a chat (instruction-tuned) VLM.")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[image.convert("RGB")], text=[prompt], return_tensors="pt")
    inputs = inputs.to(model.device, dtype=model.dtype)  # only floating tensors (pixels) take the dtype
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        inputs.pop("token_type_ids", None)  # some tokenizers return them; generate refuses what forward lacks
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()


def describe_subject(
    model: Any, processor: Any, images: list[Image.Image], class_word: str, max_new_tokens: int = 48
) -> list[str]:
    """The subject's attribute words over all its images, the most often seen first.

    One image can hide an attribute (a side view, a shadow), so each image is asked on its own and the
    words are ranked by how many images mention them; ties keep the order in which they first appeared.
    """
    class_word = check_class_word(class_word)
    if not images:
        raise DreamMixInputError("Give at least one image of the subject to describe.")
    question = VLM_QUESTION.format(class_word=class_word)
    counts: Counter[str] = Counter()  # insertion-ordered: first appearance breaks ties in the stable sort
    for image in images:
        counts.update(parse_vlm_answer(ask_vlm(model, processor, image, question, max_new_tokens), class_word))
    return sorted(counts, key=lambda word: -counts[word])
