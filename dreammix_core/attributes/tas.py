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

The host gives the text encoder as a `TokenEncoder` (tokens with word ids, their embeddings, the prompt's
conditioning); `substitute_attributes` is the whole step, the other functions its parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import torch

from ..errors import DreamMixInputError

DEFAULT_ATTRIBUTE_TEMPLATE = "a photo of a sks {attributes}"

Tokens = dict[str, list]
"""A tokenisation with word ids, as ComfyUI's CLIP gives it: per encoder key ("l", "g", "t5xxl", "qwen3_4b"),
chunks of (token, weight, word id), where a token is an id (or an embedding tensor) and start, end and padding
tokens have word id 0."""


class TokenEncoder(Protocol):
    """The text encoder TAS works on."""

    def tokenize(self, text: str) -> Tokens:
        """`text`'s tokens with word ids."""

    def encode(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(token embeddings (1, T, D), pooled vector or None)."""

    def encode_scheduled(self, tokens: Tokens) -> list:
        """The conditioning of `tokens`: [(embedding (1, T, D), extras)], extras holding "pooled_output" if any."""

    def stacked_layers(self, key: str) -> int:
        """How many of encoder `key`'s hidden layers the embedding holds side by side (FLUX.2 Klein's Qwen3: 3)."""


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


CLIP_WIDTHS = {"l": 768, "g": 1280, "h": 1024}
"""Width of a CLIP text encoder's slice of the embedding, by ComfyUI's tokenizer key."""
SLICES = {
    ("l",): ("l",),  # SD1.5
    ("h",): ("h",),  # SD2
    ("g", "l"): ("l", "g"),  # SDXL: CLIP-L then OpenCLIP-bigG
    ("l", "t5xxl"): ("t5xxl",),  # FLUX.1: T5-XXL's tokens; CLIP-L gives only the pooled vector
    ("qwen3_4b",): ("qwen3_4b",),  # FLUX.2 Klein 4B (three layers), Z-Image (one)
    ("qwen3_8b",): ("qwen3_8b",),  # FLUX.2 Klein 9B
    ("qwen25_7b",): ("qwen25_7b",),  # Qwen-Image and its Edit models: Qwen2.5-VL 7B
}
"""Each family's encoders in the embedding's last dim, in order, keyed by its tokenizer keys; an encoder stacking
several hidden layers has a slice per layer. A slice of a key without a CLIP width takes an equal share of what the
CLIP slices leave (the width of T5 or of a Qwen layer)."""


def flat_tokens(chunks: list) -> tuple[list, list[int]]:
    """Token ids (or embedding tensors) and word ids of a ComfyUI tokenisation, chunks joined."""
    tokens = [t[0] if isinstance(t[0], int) else id(t[0]) for chunk in chunks for t in chunk]
    words = [t[2] for chunk in chunks for t in chunk]
    return tokens, words


def encoder_slices(encoder: TokenEncoder, tokens: Tokens, width: int) -> list[tuple[str, int, int]]:
    """(key, begin, end) of each slice of the embedding's last dim: one per encoder and stacked layer."""
    keys = [key for key in SLICES.get(tuple(sorted(tokens)), ()) for _ in range(encoder.stacked_layers(key))]
    fixed = sum(CLIP_WIDTHS.get(key, 0) for key in keys)
    shared = sum(1 for key in keys if key not in CLIP_WIDTHS)
    share, rest = divmod(width - fixed, shared) if shared else (0, width - fixed)
    if not keys or rest or (shared and share <= 0):
        raise DreamMixInputError(
            f"TAS supports the text encoders of SD1.5, SD2, SDXL, FLUX.1 (CLIP-L + T5-XXL), FLUX.2 Klein and Z-Image "
            f"(Qwen3) and Qwen-Image (Qwen2.5-VL); this CLIP has encoders {sorted(tokens)} with embedding width "
            f"{width}."
        )
    slices, begin = [], 0
    for key in keys:
        end = begin + CLIP_WIDTHS.get(key, share)
        slices.append((key, begin, end))
        begin = end
    return slices


def dropped_prefix(token_count: int, embedding: torch.Tensor) -> int:
    """How many leading tokens the encoder left out of `embedding` (B, T, D), which then holds the last T of the
    `token_count` tokens: Qwen-Image's encoder drops its system prompt; every other encoder drops none."""
    dropped = token_count - embedding.shape[1]
    if dropped < 0:
        raise DreamMixInputError(
            f"The text encoder gave {embedding.shape[1]} token embeddings for {token_count} tokens: TAS cannot tell "
            f"which embedding is which token."
        )
    return dropped


def template_tokens(encoder: TokenEncoder, key: str) -> list:
    """The word-id tokens of the empty prompt in encoder `key`: the chat template around every prompt, if any."""
    ids, words = flat_tokens(encoder.tokenize("")[key])
    return [t for t, w in zip(ids, words) if w != 0]


def prompt_token_positions(tokens: Tokens, key: str, template: list) -> list[int]:
    """Positions of the prompt's own tokens in encoder `key`'s tokens: no start, end, padding or template token."""
    ids, words = flat_tokens(tokens[key])
    return prompt_positions(words, ids, template)


def locate_attributes(encoder: TokenEncoder, key: str, text_tokens: Tokens, attributes: list[str]) -> list[int]:
    """Where each attribute's tokens sit among encoder `key`'s tokens of the attribute text."""
    template = template_tokens(encoder, key)

    def prompt_tokens(text: str) -> list:
        tokens = encoder.tokenize(text)
        ids = flat_tokens(tokens[key])[0]
        return [ids[i] for i in prompt_token_positions(tokens, key, template)]

    text_ids = flat_tokens(text_tokens[key])[0]
    words = {}
    for word in attributes:
        # A word after a space tokenises apart from one that starts the text in byte-level BPE (Qwen3).
        spaced = prompt_tokens(" " + word)
        words[word] = spaced if find_positions(text_ids, spaced) else prompt_tokens(word)
    return attribute_positions(text_ids, words)


def attribute_directions(encoder: TokenEncoder, attributes: list[str], template: str) -> tuple[list, torch.Tensor]:
    """(begin, end, directions) of each slice: the token embeddings of the attribute words in the attribute
    text, in that slice's space; and the attribute text's pooled vector."""
    text = fill_template(template, attributes)
    text_tokens = encoder.tokenize(text)
    for chunks in text_tokens.values():
        if len(chunks) > 1:  # a word split across chunks would not be found, and the chunks encode apart
            count = sum(1 for chunk in chunks for token in chunk if token[2] != 0)
            raise DreamMixInputError(
                f"The attribute text '{text}' is {count} tokens long, more than the text encoder's one chunk "
                f"(75 tokens): list fewer or shorter original attributes, only those the edit replaces."
            )
    embedding, pooled = encoder.encode(text_tokens)
    slices, positions = [], {}
    for key, begin, end in encoder_slices(encoder, text_tokens, embedding.shape[-1]):
        if key not in positions:  # Klein's three slices share one encoder's tokens
            dropped = dropped_prefix(len(flat_tokens(text_tokens[key])[0]), embedding)
            positions[key] = [p - dropped for p in locate_attributes(encoder, key, text_tokens, attributes)]
        slices.append((begin, end, embedding[0, positions[key], begin:end]))
    return slices, pooled


def substitute_attributes(
    encoder: TokenEncoder, prompt: str, attributes: list[str], template: str, strength: float
) -> tuple[list, list]:
    """(decomposed, plain) conditionings of `prompt`: plain as the encoder gives it; decomposed with every content
    token (each slice in its own space) and the pooled vector rejected from the span of the `attributes`' directions
    in `template`'s text, `strength` of it."""
    check_strength(strength)
    if not attributes:
        raise DreamMixInputError("Type at least one original attribute, e.g. 'blue' or 'clay, glossy'.")
    tokens = encoder.tokenize(prompt)
    plain = encoder.encode_scheduled(tokens)
    slices, attribute_pooled = attribute_directions(encoder, attributes, template)
    key = encoder_slices(encoder, tokens, plain[0][0].shape[-1])[0][0]  # the slices' keys share word positions
    content = torch.zeros(len(flat_tokens(tokens[key])[0]), dtype=torch.bool)
    content[prompt_token_positions(tokens, key, template_tokens(encoder, key))] = True
    decomposed = []
    for embedding, extras in plain:
        extras = dict(extras)
        pooled = extras.get("pooled_output")
        if pooled is not None and attribute_pooled is not None:
            extras["pooled_output"] = reject(pooled, orthonormal_basis(attribute_pooled), strength)
        embedded = content[dropped_prefix(len(content), embedding) :]
        if embedded.sum() != content.sum():
            raise DreamMixInputError("The text encoder left some of the prompt's own tokens out of its embedding.")
        decomposed.append([decompose_tokens(embedding, embedded, slices, strength), extras])
    return decomposed, plain
