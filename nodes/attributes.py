"""Attribute editing nodes: Textual Attribute Substitution on ComfyUI's CLIP."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..dreammix_core.errors import DreamMixInputError
from ..dreammix_core.tas import (
    DEFAULT_ATTRIBUTE_TEMPLATE,
    attribute_positions,
    check_strength,
    decompose_tokens,
    fill_template,
    orthonormal_basis,
    parse_attribute_list,
    reject,
)

CATEGORY = "DreamMix/attributes"

ENCODER_WIDTHS = {"l": 768, "g": 1280, "h": 1024}
"""Width of each CLIP text encoder's slice, by ComfyUI's tokenizer key."""
ENCODER_ORDER = ("l", "h", "g")
"""Order of the slices in a concatenated embedding (SDXL: CLIP-L then OpenCLIP-bigG)."""


def _flatten(chunks: list) -> tuple[list, list[int]]:
    """Token ids (or embedding tensors) and word ids of a ComfyUI tokenisation, chunks joined."""
    tokens = [t[0] if isinstance(t[0], int) else id(t[0]) for chunk in chunks for t in chunk]
    words = [t[2] for chunk in chunks for t in chunk]
    return tokens, words


def encoder_slices(tokens: dict, width: int) -> list[tuple[str, int, int]]:
    """(key, begin, end) of each encoder's slice of the embedding's last dim."""
    keys = [key for key in ENCODER_ORDER if key in tokens]
    if set(keys) != set(tokens) or sum(ENCODER_WIDTHS[key] for key in keys) != width:
        raise DreamMixInputError(
            f"TAS supports CLIP text encoders of the SD1.5, SD2 and SDXL families; this CLIP has encoders "
            f"{sorted(tokens)} with embedding width {width}."
        )
    slices, begin = [], 0
    for key in keys:
        slices.append((key, begin, begin + ENCODER_WIDTHS[key]))
        begin += ENCODER_WIDTHS[key]
    return slices


def attribute_directions(clip, attributes: list[str], template: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per encoder, the token embeddings of the attribute words in the attribute text; and its pooled vector."""
    text_tokens = clip.tokenize(fill_template(template, attributes), return_word_ids=True)
    embedding, pooled = clip.encode_from_tokens(text_tokens, return_pooled=True)
    directions = {}
    for key, begin, end in encoder_slices(text_tokens, embedding.shape[-1]):
        words = {}
        for word in attributes:
            ids, word_ids = _flatten(clip.tokenize(word, return_word_ids=True)[key])
            words[word] = [t for t, w in zip(ids, word_ids) if w != 0]
        positions = attribute_positions(_flatten(text_tokens[key])[0], words)
        directions[key] = embedding[0, positions, begin:end]
    return directions, pooled


class DreamMixTextualAttributeSubstitution(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixTAS",
            display_name="DreamMix Textual Attribute Substitution",
            category=CATEGORY,
            description="Encodes the prompt twice: plain, and with the subject's original attributes projected out "
            "of every content token, so an edit ('red') wins over what the subject LoRA memorised ('blue').",
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder (SD1.5, SD2 or SDXL family)."),
                io.String.Input(
                    "prompt",
                    multiline=True,
                    default="a photo of a red sks backpack",
                    tooltip="The edit prompt. ComfyUI's (word:1.2) weights and long prompts work.",
                ),
                io.String.Input(
                    "original_attributes",
                    default="blue",
                    tooltip="Words describing the subject as photographed, separated by commas, e.g. "
                    "'blue, nylon'. Multi-word attributes ('light blue') are fine.",
                ),
                io.String.Input(
                    "attribute_template",
                    default=DEFAULT_ATTRIBUTE_TEMPLATE,
                    tooltip="Text the attribute words are encoded in; {attributes} is replaced by them.",
                ),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Share of the attribute directions removed: 1 removes them fully, "
                    "0 gives the plain encoding.",
                ),
            ],
            outputs=[
                io.Conditioning.Output("decomposed", tooltip="For LCG: DreamMix Inpaint's local_positive."),
                io.Conditioning.Output("plain", tooltip="The plain encoding, for GCH: DreamMix Inpaint's positive."),
            ],
        )

    @classmethod
    def execute(cls, clip, prompt, original_attributes, attribute_template, strength) -> io.NodeOutput:
        if clip is None:
            raise DreamMixInputError(
                "No CLIP is connected: a checkpoint without a text encoder cannot be used for TAS."
            )
        check_strength(strength)
        attributes = parse_attribute_list(original_attributes)
        if not attributes:
            raise DreamMixInputError("Type at least one original attribute, e.g. 'blue' or 'clay, glossy'.")
        tokens = clip.tokenize(prompt, return_word_ids=True)
        plain = clip.encode_from_tokens_scheduled(tokens)
        directions, attribute_pooled = attribute_directions(clip, attributes, attribute_template)
        content = torch.tensor([w != 0 for w in _flatten(next(iter(tokens.values())))[1]])
        decomposed = []
        for embedding, extras in plain:
            slices = [(begin, end, directions[key]) for key, begin, end in encoder_slices(tokens, embedding.shape[-1])]
            extras = dict(extras)
            pooled = extras.get("pooled_output")
            if pooled is not None and attribute_pooled is not None:
                extras["pooled_output"] = reject(pooled, orthonormal_basis(attribute_pooled), strength)
            decomposed.append([decompose_tokens(embedding, content[: embedding.shape[1]], slices, strength), extras])
        return io.NodeOutput(decomposed, plain)


NODES: list[type[io.ComfyNode]] = [DreamMixTextualAttributeSubstitution]
