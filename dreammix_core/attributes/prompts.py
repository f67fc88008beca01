"""Attribute words and the prompts built from them (method.md §4, attribute decoupling).

The subject's visible attributes (colour, material, texture, shape, pattern) feed two things:
TAS's "original attributes", and ADM's regular prompts, with and without each attribute, that
teach the LoRA the class in all its variants so the identifier does not absorb the attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..errors import DreamMixInputError

IDENTIFIER = "sks"

VLM_QUESTION = (
    "List the visible attributes of the {class_word} in the image: its colour, material, texture, shape and "
    "pattern. Answer with a comma-separated list of short adjectives or nouns only, for example: "
    "red, leather, glossy, round, striped."
)

_FILLER = {
    "a",
    "an",
    "the",
    "it",
    "its",
    "it's",
    "is",
    "are",
    "was",
    "has",
    "have",
    "with",
    "and",
    "of",
    "made",
    "in",
    "this",
    "that",
    "object",
    "item",
    "appears",
    "seems",
    "looks",
    "to",
    "be",
    "very",
    "quite",
    "some",
    "which",
    "color",
    "colour",
    "colored",
    "coloured",
    "material",
    "texture",
    "textured",
    "shape",
    "shaped",
    "pattern",
    "finish",
    "surface",
    "attributes",
    "visible",
    "image",
    "photo",
    "picture",
    "here",
    "there",
    "answer",
    "list",
}
_LABEL = re.compile(r"^[^:\n]{1,40}:\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_MAX_WORDS = 3


def _words_of(segment: str, class_words: set[str]) -> str:
    kept = [w for w in re.findall(r"[a-z][a-z'-]*", segment.lower()) if w not in _FILLER and w not in class_words]
    return " ".join(kept)


def _segments(answer: str) -> list[str]:
    """Splits an answer that may be JSON, a bulleted or numbered list, 'label: value' lines or prose."""
    text = answer.strip()
    match = re.search(r"[\[{].*[\]}]", text, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            data = None
        if data is not None:
            return [str(leaf) for leaf in _flat(data)]
    parts = []
    for line in text.splitlines():
        line = _LABEL.sub("", _BULLET.sub("", line))
        parts.extend(re.split(r",|;|\band\b|\bor\b|\bwith\b|\.(?:\s|$)|/", line))
    return parts


def _flat(value: object) -> list[object]:
    """Leaves of nested JSON lists and objects."""
    if isinstance(value, dict):
        value = list(value.values())
    return [x for item in value for x in _flat(item)] if isinstance(value, list) else [value]


def parse_vlm_answer(answer: str, class_word: str) -> list[str]:
    """Attribute words from a free-form model answer: lower case, no duplicates, the class word excluded."""
    class_words = {w for w in re.findall(r"[a-z]+", class_word.lower())}
    class_words |= {w + "s" for w in class_words} | {w + "es" for w in class_words}
    words: list[str] = []
    answer = answer.replace(VLM_QUESTION.format(class_word=class_word), "")
    for segment in _segments(answer):
        word = _words_of(segment, class_words)
        if word and len(word.split()) <= _MAX_WORDS and word not in words:
            words.append(word)
    return words


def check_class_word(class_word: str) -> str:
    word = " ".join(class_word.split()).lower()
    if not word:
        raise DreamMixInputError("Type the subject's class word, e.g. 'backpack' or 'dog'.")
    if IDENTIFIER in word.split():
        raise DreamMixInputError(f"The class word must not contain the identifier '{IDENTIFIER}'.")
    return word


def instance_prompt(class_word: str) -> str:
    return f"a photo of a {IDENTIFIER} {check_class_word(class_word)}"


def regular_prompts(class_word: str, attributes: Sequence[str]) -> list[str]:
    """ADM's regular prompts: the bare class and the class with each attribute; never the identifier."""
    word = check_class_word(class_word)
    prompts = [f"a photo of a {word}"] + [f"a photo of a {attribute} {word}" for attribute in attributes]
    check_regular_prompts(prompts)
    return list(dict.fromkeys(prompts))


def check_regular_prompts(prompts: Sequence[str]) -> None:
    """Regular prompts describe the class, so none may contain the identifier; the message names each one that does."""
    with_identifier = [prompt for prompt in prompts if IDENTIFIER in prompt.split()]
    if with_identifier:
        raise DreamMixInputError(
            f"Regular prompts describe the class, never the subject: remove '{IDENTIFIER}' from "
            + "; ".join(f"'{prompt}'" for prompt in with_identifier)
        )


def edit_prompt(class_word: str, edit: str, scene: str = "") -> str:
    """'a photo of a red sks backpack on the grass' from the edit words and an optional scene phrase."""
    parts = ["a photo of a", " ".join(edit.split()), IDENTIFIER, check_class_word(class_word), " ".join(scene.split())]
    return " ".join(part for part in parts if part)
