"""Textual Attribute Substitution: remove the subject's original attributes from a prompt embedding.

A subject LoRA memorises how the subject looked ("clay teapot"); an edit ("a glass sks teapot")
must win over that memory. TAS projects every content token of the prompt's embedding onto the
orthogonal complement of the span of the original attributes' token embeddings, so nothing of
"clay" is left for the model to follow, while start, end and padding tokens, and the chat template
a language-model encoder wraps every prompt in (FLUX.2 Klein's Qwen3), stay as they are.

Unlike the released code this finds the real token positions of each attribute (multi-token words
included), projects onto the complement of the span of all directions at once (one rejection
after another is not a projection when directions are not orthogonal), and treats each text
encoder's slice of a concatenated embedding in its own space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from ..errors import DreamMixInputError

DEFAULT_ATTRIBUTE_TEMPLATE = "a photo of a sks {attributes}"


def parse_attribute_list(text: str) -> list[str]:
    """Attributes typed by a user: separated by commas, semicolons or new lines; case-folded, no duplicates."""
    words: list[str] = []
    for part in re.split(r"[,;\n]", text):
        word = " ".join(part.split()).strip(" .\"'").lower()
        if word and word not in words:
            words.append(word)
    return words


def fill_template(template: str, attributes: Sequence[str]) -> str:
    if "{attributes}" not in template:
        raise DreamMixInputError(
            "The attribute template must contain '{attributes}', e.g. 'a photo of a sks {attributes}'."
        )
    return template.replace("{attributes}", " ".join(attributes))


def find_positions(haystack: Sequence[int], needle: Sequence[int]) -> list[int]:
    """Positions of every occurrence of the token run `needle` in `haystack`."""
    if not needle:
        return []
    size = len(needle)
    found: list[int] = []
    for start in range(len(haystack) - size + 1):
        if list(haystack[start : start + size]) == list(needle):
            found.extend(range(start, start + size))
    return found


def prompt_positions(word_ids: Sequence[int], tokens: Sequence[int], template: Sequence[int]) -> list[int]:
    """Positions of the prompt's own tokens in a tokenisation.

    `word_ids` are the tokenizer's word ids (0 for start, end and padding tokens); `template` is the
    word-id tokens of the empty prompt's tokenisation: the chat template around every prompt
    ("<|im_start|>user\\n{}<|im_end|>..."), empty for CLIP and T5. Template tokens carry word ids like
    the prompt's own (the template has no spaces, so it shares a word with the first and last prompt
    word), so they are found by value: a prefix of the template at the start, its rest at the end.
    """
    worded = [i for i, word in enumerate(word_ids) if word != 0]
    ids, template = [tokens[i] for i in worded], list(template)
    for head in range(len(template), -1, -1):  # the longest prefix whose rest ends the tokens: a prompt may end in "\n"
        tail = len(template) - head
        if head + tail <= len(ids) and ids[:head] == template[:head] and ids[len(ids) - tail :] == template[head:]:
            return worded[head : len(worded) - tail]
    raise DreamMixInputError(
        "The text encoder's template does not surround the prompt as it surrounds the empty prompt: TAS cannot "
        "tell the prompt's tokens from the template's."
    )


def orthonormal_basis(directions: torch.Tensor, tolerance: float = 1e-6) -> torch.Tensor:
    """(dim, rank) orthonormal basis of the span of the rows of `directions` (K, dim), in float64."""
    vectors = directions.to(torch.float64)
    u, singular, _ = torch.linalg.svd(vectors.T, full_matrices=False)
    if singular.numel() == 0 or singular[0] == 0:
        raise DreamMixInputError("The attribute directions are all zero: the attribute words carry no embedding.")
    return u[:, singular > tolerance * singular[0]]


def reject(vectors: torch.Tensor, basis: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """vectors − strength · (projection of vectors onto span(basis)), computed in float64."""
    wide = vectors.to(torch.float64)
    return (wide - strength * (wide @ basis) @ basis.T).to(vectors.dtype)


def decompose_tokens(
    embedding: torch.Tensor,
    content: torch.Tensor,
    slices: Sequence[tuple[int, int, torch.Tensor]],
    strength: float = 1.0,
) -> torch.Tensor:
    """Applies TAS to the content tokens of an embedding (B, T, D).

    `content` is a (T,) bool mask of the tokens to change; each `(begin, end, directions)` gives an
    encoder's slice [begin, end) of the last dim and its attribute directions (K, end − begin).
    """
    check_strength(strength)
    out = embedding.clone()
    for begin, end, directions in slices:
        basis = orthonormal_basis(directions)
        out[:, content, begin:end] = reject(embedding[:, content, begin:end], basis, strength)
    return out


def check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise DreamMixInputError(f"TAS strength must be between 0 and 1, got {strength}.")


def attribute_positions(text_tokens: Sequence[int], attributes: dict[str, Sequence[int]]) -> list[int]:
    """Token positions of every attribute in the tokenised attribute text.

    `attributes` maps each attribute to its own content tokens (tokenised alone, no start or end
    token), so multi-token words ("light blue", "polka-dotted") and repeated words are all found.
    """
    positions: list[int] = []
    for word, tokens in attributes.items():
        if not tokens:
            raise DreamMixInputError(
                f"The attribute '{word}' tokenises to nothing: type a word the text encoder knows."
            )
        found = find_positions(text_tokens, tokens)
        if not found:
            raise DreamMixInputError(
                f"The attribute '{word}' is not among the attribute text's tokens: the text encoder splits it "
                "differently next to its neighbours. Separate the attributes with commas and keep '{attributes}' "
                "surrounded by spaces in the template."
            )
        positions.extend(p for p in found if p not in positions)
    return positions
