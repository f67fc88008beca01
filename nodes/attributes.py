"""Attribute editing nodes: attribute words from a VLM, ADM prompts, and TAS on ComfyUI's CLIP."""

from __future__ import annotations

import os

import comfy.model_management
import folder_paths
import torch
from comfy_api.latest import io

from ..dreammix_core.attributes.prompts import edit_prompt, instance_prompt, regular_prompts
from ..dreammix_core.attributes.tas import DEFAULT_ATTRIBUTE_TEMPLATE, parse_attribute_list, substitute_attributes
from ..dreammix_core.errors import DreamMixInputError
from .convert import to_pil
from .list_inputs import first_value, flat_list
from .managed_models import managed_model, model_source

CATEGORY = "DreamMix/attributes"
VLM_FOLDER = "vlm"
NO_VLM = "none (type the attributes)"

folder_paths.add_model_folder_path(VLM_FOLDER, os.path.join(folder_paths.models_dir, VLM_FOLDER))


class ComfyTokenEncoder:
    """ComfyUI's CLIP as TAS's token encoder (`dreammix_core.attributes.tas.TokenEncoder`)."""

    def __init__(self, clip) -> None:
        self.clip = clip

    def tokenize(self, text: str) -> dict:
        return self.clip.tokenize(text, return_word_ids=True)

    def encode(self, tokens: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.clip.encode_from_tokens(tokens, return_pooled=True)

    def encode_scheduled(self, tokens: dict) -> list:
        return self.clip.encode_from_tokens_scheduled(tokens)

    def stacked_layers(self, key: str) -> int:
        """ComfyUI's encoder model for `key` (attribute `clip_<key>` for CLIPs, `<key>` otherwise) names its output
        layer, or a list of layers it stacks (Klein)."""
        models = self.clip.cond_stage_model
        layer = (getattr(models, f"clip_{key}", None) or getattr(models, key)).layer
        return len(layer) if isinstance(layer, list) else 1


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
                io.Clip.Input(
                    "clip",
                    tooltip="The text encoder: SD1.5, SD2, SDXL, FLUX.1 (CLIP-L + T5-XXL), FLUX.2 Klein or Z-Image "
                    "(Qwen3).",
                ),
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
                io.Conditioning.Output(
                    "decomposed", display_name="decomposed", tooltip="For LCG: DreamMix Inpaint's local_positive."
                ),
                io.Conditioning.Output(
                    "plain", display_name="plain", tooltip="The plain encoding, for GCH: DreamMix Inpaint's positive."
                ),
            ],
        )

    @classmethod
    def execute(cls, clip, prompt, original_attributes, attribute_template, strength) -> io.NodeOutput:
        if clip is None:
            raise DreamMixInputError(
                "No CLIP is connected: a checkpoint without a text encoder cannot be used for TAS."
            )
        attributes = parse_attribute_list(original_attributes)
        encoder = ComfyTokenEncoder(clip)
        return io.NodeOutput(*substitute_attributes(encoder, prompt, attributes, attribute_template, strength))


def vlm_choices() -> list[str]:
    """Sub-folders of ComfyUI's `vlm` model folders that hold a model (a config.json)."""
    found = []
    for root in folder_paths.get_folder_paths(VLM_FOLDER):
        if os.path.isdir(root):
            found += sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "config.json")))
    return [NO_VLM, *found]


def _vlm_source(choice: str, hub_id: str) -> str | None:
    if hub_id.strip():
        return model_source(hub_id, "vlm_hub_id")
    if choice == NO_VLM:
        return None
    for root in folder_paths.get_folder_paths(VLM_FOLDER):
        if os.path.isdir(os.path.join(root, choice)):
            return os.path.join(root, choice)
    raise DreamMixInputError(f"The VLM folder '{choice}' is no longer in models/{VLM_FOLDER}: refresh the node.")


def loaded_vlm(source: str) -> tuple[torch.nn.Module, object]:
    """The VLM and its processor, loaded once and placed by ComfyUI's memory management."""
    from ..dreammix_core.attributes.vlm import load_vlm

    return managed_model(("vlm", source), lambda: load_vlm(source, dtype=comfy.model_management.text_encoder_dtype()))


class DreamMixAttributeRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixAttributeRefine",
            display_name="DreamMix Attribute Refine",
            category=CATEGORY,
            description="The subject's attribute words (colour, material, texture, shape, pattern), from a "
            "vision-language model or typed, and the prompts DreamMix builds from them.",
            is_input_list=True,
            inputs=[
                io.Image.Input(
                    "subject_images",
                    tooltip="Photos of the subject: a batch, or DreamMix Subject Photos' list of photos of any sizes "
                    "(the VLM sees each at its own size).",
                ),
                io.String.Input("class_word", default="backpack", tooltip="What the subject is: 'dog', 'teapot'."),
                io.String.Input(
                    "typed_attributes",
                    default="",
                    tooltip="Type the attributes (comma-separated) to skip the VLM entirely; leave empty to ask it.",
                ),
                io.Combo.Input(
                    "vlm",
                    options=vlm_choices(),
                    default=NO_VLM,
                    tooltip="An image-text-to-text model folder under models/vlm (any chat VLM transformers loads).",
                ),
                io.String.Input(
                    "vlm_hub_id",
                    default="",
                    tooltip="Or a Hugging Face id already in the local cache; overrides the folder choice.",
                ),
                io.Int.Input("max_new_tokens", default=48, min=4, max=512, tooltip="Length of the VLM's answer."),
            ],
            outputs=[
                io.String.Output(
                    "attributes",
                    display_name="attributes",
                    tooltip="Comma-separated attribute words: TAS's original attributes.",
                ),
                io.String.Output(
                    "instance_prompt",
                    display_name="instance_prompt",
                    tooltip="'a photo of a sks <class>' for subject training.",
                ),
                io.String.Output(
                    "regular_prompts",
                    display_name="regular_prompts",
                    tooltip="ADM's regular prompts, one per line, without 'sks'.",
                ),
            ],
        )

    @classmethod
    def execute(cls, subject_images: list[torch.Tensor], **options: list) -> io.NodeOutput:
        """A list-input node, so photos of different sizes arrive together; each widget is a one-value list."""
        scalars = {key: first_value(value) for key, value in options.items()}
        return _refine(flat_list(subject_images, "image"), **scalars)


def _refine(
    photos: list[torch.Tensor], class_word: str, typed_attributes: str, vlm: str, vlm_hub_id: str, max_new_tokens: int
) -> io.NodeOutput:
    words = parse_attribute_list(typed_attributes)
    if not words:
        source = _vlm_source(vlm, vlm_hub_id)
        if source is None:
            raise DreamMixInputError("Type the subject's attributes, or choose a VLM to find them.")
        from ..dreammix_core.attributes.vlm import describe_subject

        model, processor = loaded_vlm(source)
        words = describe_subject(model, processor, to_pil(photos), class_word, max_new_tokens)
        if not words:
            raise DreamMixInputError("The VLM named no attributes: type them instead, or try another VLM.")
    prompts = regular_prompts(class_word, words)
    return io.NodeOutput(", ".join(words), instance_prompt(class_word), "\n".join(prompts))


class DreamMixEditPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixEditPrompt",
            display_name="DreamMix Edit Prompt",
            category=CATEGORY,
            description="Builds 'a photo of a <edit> sks <class> <scene>' for an attribute edit.",
            inputs=[
                io.String.Input("class_word", default="backpack", tooltip="What the subject is."),
                io.String.Input("edit", default="red", tooltip="The new attributes, e.g. 'red' or 'glass'."),
                io.String.Input("scene", default="", tooltip="Optional words after the subject, e.g. 'on the grass'."),
            ],
            outputs=[
                io.String.Output("prompt", display_name="prompt", tooltip="The edit prompt for TAS or a text encoder.")
            ],
        )

    @classmethod
    def execute(cls, class_word, edit, scene) -> io.NodeOutput:
        return io.NodeOutput(edit_prompt(class_word, edit, scene))


NODES: list[type[io.ComfyNode]] = [DreamMixAttributeRefine, DreamMixEditPrompt, DreamMixTextualAttributeSubstitution]
