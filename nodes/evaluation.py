"""Evaluation node: the paper's CLIP-T, CLIP-I and DINO scores for an inpainted result (method.md §5)."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..dreammix_core.errors import DreamMixInputError
from ..dreammix_core.evaluation.metrics import (
    DEFAULT_CLIP,
    DEFAULT_DINO,
    MetricModel,
    clip_t_text,
    load_metric_model,
    mean_scores,
    score,
)
from ..dreammix_core.masks import check_mask_count
from .convert import to_pil
from .managed_models import managed_model, model_source

CATEGORY = "DreamMix/evaluation"


def loaded_metric_model(kind: str, source: str) -> MetricModel:
    """A CLIP or DINO model (float32, for repeatable scores), loaded once and placed by ComfyUI."""

    def load() -> tuple[torch.nn.Module, MetricModel]:
        metric = load_metric_model(kind, source, device="cpu", dtype=torch.float32)
        return metric.model, metric

    model, metric = managed_model((kind, source), load)
    metric.model = model
    return metric


class DreamMixScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixScore",
            display_name="DreamMix Score (CLIP-T, CLIP-I, DINO)",
            category=CATEGORY,
            description="The paper's metrics, raw cosine similarities: CLIP-T (result vs prompt, 'sks' replaced "
            "by the class word), CLIP-I and DINO (the mask's bounding box in the result vs each reference photo, "
            "averaged). Models load from a local folder or the local Hugging Face cache, never the network.",
            is_output_node=True,
            inputs=[
                io.Image.Input("image", tooltip="The inpainted result (a batch is scored image by image, averaged)."),
                io.Mask.Input("mask", tooltip="The mask it was inpainted with: its bounding box is the subject."),
                io.Image.Input("references", tooltip="Photos of the subject (a batch)."),
                io.String.Input(
                    "prompt",
                    multiline=True,
                    default="a photo of a sks backpack on the grass",
                    tooltip="The prompt the result was generated from.",
                ),
                io.String.Input(
                    "class_word", default="backpack", tooltip="Replaces the identifier 'sks' in the prompt for CLIP-T."
                ),
                io.String.Input(
                    "clip_model",
                    default=DEFAULT_CLIP,
                    tooltip="CLIP for CLIP-T and CLIP-I: a folder inside ComfyUI's models folder, or a Hugging Face id "
                    "in the local cache.",
                ),
                io.String.Input(
                    "dino_model",
                    default=DEFAULT_DINO,
                    tooltip="DINO ViT for DINO: a folder inside ComfyUI's models folder, or a Hugging Face id in the "
                    "local cache.",
                ),
            ],
            outputs=[
                io.Float.Output("clip_t", display_name="CLIP-T", tooltip="Image-text cosine similarity."),
                io.Float.Output("clip_i", display_name="CLIP-I", tooltip="Subject-reference CLIP cosine, averaged."),
                io.Float.Output("dino", display_name="DINO", tooltip="Subject-reference DINO cosine, averaged."),
                io.String.Output("summary", display_name="summary", tooltip="'CLIP-T 0.285 | CLIP-I ... | DINO ...'."),
            ],
        )

    @classmethod
    def execute(cls, image, mask, references, prompt, class_word, clip_model, dino_model) -> io.NodeOutput:
        if mask.ndim == 2:
            mask = mask[None]
        check_mask_count(mask.shape[0], image.shape[0], "image")
        if tuple(mask.shape[1:]) != tuple(image.shape[1:3]):
            raise DreamMixInputError(
                f"The mask is {mask.shape[2]}x{mask.shape[1]} but the image is {image.shape[2]}x{image.shape[1]}: "
                f"give the mask the image was inpainted with."
            )
        clip_t_text(prompt, class_word)  # a bad prompt or class word fails before any model loads
        for name, source in (("clip_model", clip_model), ("dino_model", dino_model)):
            if not source.strip():
                raise DreamMixInputError(f"Give {name} as a local folder or a Hugging Face id.")
        clip = loaded_metric_model("clip", model_source(clip_model, "clip_model"))
        dino = loaded_metric_model("dino", model_source(dino_model, "dino_model"))
        refs = to_pil(references)
        results = [
            score(result, mask[min(i, mask.shape[0] - 1)].cpu().numpy(), refs, prompt, class_word, clip=clip, dino=dino)
            for i, result in enumerate(to_pil(image))
        ]
        mean = mean_scores(results)
        line = mean.line()
        return io.NodeOutput(mean.clip_t, mean.clip_i, mean.dino, line, ui=ui.PreviewText(line))


NODES: list[type[io.ComfyNode]] = [DreamMixScore]
