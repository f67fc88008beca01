"""DreamMix Train Subject LoRA: the per-subject LoRA with the Attribute Decoupling Mechanism (method.md §4).

Subject photos with Bézier-augmented masks mixed with regular data, the mask-weighted loss,
checkpoints that resume exactly, and a LoRA that LoraLoader / LoraLoaderModelOnly load. The recipe
is `dreammix_core.training.subject_lora`; ComfyUI is its host (`comfy_training`), with ComfyUI's own adapters.
"""

from __future__ import annotations

import logging
import os

import comfy.model_management
import comfy.utils
import folder_paths
import numpy as np
import torch
from comfy_api.latest import io

from ...dreammix_core.errors import DreamMixInputError
from ...dreammix_core.paths import confined_path
from ...dreammix_core.training.data import REGULAR_COPIES, REGULAR_PROBABILITY, SUBJECT_COPIES
from ...dreammix_core.training.loop import LoopSettings, loss_curve_image
from ...dreammix_core.training.lora_file import CHECKPOINTS_SUFFIX
from ...dreammix_core.training.lora_targets import KV_OUT, RECIPES
from ...dreammix_core.training.loss import INSIDE_WEIGHT, OUTSIDE_WEIGHT
from ...dreammix_core.training.regular_data import read_regular_dataset
from ...dreammix_core.training.subject_lora import LoraRecipe, train_subject_lora
from .. import inputs
from ..list_inputs import first_value, flat_list
from .comfy_training import DTYPES, ComfyTrainingHost
from .regular_data import dataset_root

CATEGORY = "DreamMix/training"
LOG = logging.getLogger("DreamMix")


class DreamMixTrainSubjectLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixTrainSubjectLoRA",
            display_name="DreamMix Train Subject LoRA (ADM)",
            category=CATEGORY,
            description="Fine-tunes a per-subject LoRA as DreamMix does: subject photos with Bézier-augmented masks "
            "mixed with regular data (Attribute Decoupling Mechanism), mask-weighted loss, inpainting-mode training "
            "for 9-channel models. Saves the LoRA into ComfyUI's loras folder and checkpoints next to it; a re-run "
            "with the same lora_name resumes. Subject photos may differ in size: connect a list of images.",
            is_input_list=True,
            inputs=[
                io.Model.Input("model", tooltip="The base (inpainting) model to train the LoRA for."),
                io.Clip.Input("clip", tooltip="Its text encoder (frozen; prompts are encoded once)."),
                io.Vae.Input("vae", tooltip="Its VAE (images are encoded once)."),
                io.Image.Input(
                    "subject_images",
                    tooltip="3-6 photos of the subject: one IMAGE batch, or a list of images of any sizes.",
                ),
                io.Mask.Input(
                    "subject_masks",
                    tooltip="One mask per photo (or one for all, if the photos share its size), 1 on the subject, "
                    "same sizes as the photos (e.g. from a "
                    "segmentation node; LoadImage's alpha mask is inverted: 1 is transparent).",
                ),
                io.String.Input(
                    "instance_prompt",
                    default="a photo of a sks backpack",
                    tooltip="The subject prompt: 'a photo of a <identifier> <class>'.",
                ),
                io.String.Input(
                    "regular_dataset",
                    default="",
                    tooltip="Folder from DreamMix Regular Data (ADM), inside ComfyUI's output directory; empty "
                    "trains on the subject only (no ADM).",
                ),
                io.String.Input(
                    "lora_name",
                    default="dreammix_subject",
                    tooltip="File name in the loras folder (.safetensors added). An existing file is never "
                    "overwritten (the node refuses); checkpoints go to <lora_name>.checkpoints/ beside it and a "
                    "re-run with the same name resumes from the last one.",
                ),
                io.Int.Input("steps", default=1000, min=1, max=100000, tooltip="Optimizer steps (method: 1000)."),
                io.Float.Input(
                    "learning_rate", default=1e-4, min=1e-7, max=1.0, step=1e-6, tooltip="AdamW lr, constant."
                ),
                io.Int.Input("rank", default=4, min=1, max=128, tooltip="LoRA rank (method: 4)."),
                io.Float.Input(
                    "alpha", default=4.0, min=0.01, max=256.0, step=0.01, tooltip="LoRA alpha; scale = alpha/rank."
                ),
                io.Combo.Input(
                    "target_modules",
                    options=list(RECIPES),
                    default=KV_OUT,
                    tooltip="Which attention projections get a LoRA (method: key, value, output; not query). On "
                    "FLUX's fused layers (qkv, and the single blocks' attention + MLP) only those parts change.",
                ),
                io.Int.Input(
                    "grad_accumulation",
                    default=4,
                    min=1,
                    max=256,
                    tooltip="Micro-steps of batch 1 per optimizer step (method: 4). Batch size is fixed at 1.",
                ),
                io.Float.Input(
                    "regular_probability",
                    default=REGULAR_PROBABILITY,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Chance that a training sample is a regular image (method: 0.3).",
                ),
                io.Float.Input(
                    "inside_weight",
                    default=INSIDE_WEIGHT,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                    tooltip="Factor on prediction and target inside the mask (method: 1.5, 2.25 on the error).",
                ),
                io.Float.Input(
                    "outside_weight",
                    default=OUTSIDE_WEIGHT,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                    tooltip="Factor outside the mask (method: 0.6, 0.36 on the error).",
                ),
                io.Int.Input(
                    "subject_copies", default=SUBJECT_COPIES, min=1, max=100, tooltip="Augmented copies per photo."
                ),
                io.Int.Input(
                    "regular_copies",
                    default=REGULAR_COPIES,
                    min=1,
                    max=100,
                    tooltip="Augmented copies per regular image.",
                ),
                inputs.resolution(
                    "Training side; 0 = the family's native (512 SD1.5, 1024 SDXL and FLUX). Lower saves memory.",
                    inputs.MAX_TRAINING_RESOLUTION,
                ),
                inputs.seed(
                    "Seeds the LoRA init, the augmentations, the sample order, noise and timesteps.",
                    control_after_generate=False,
                ),
                io.Int.Input(
                    "checkpoint_every",
                    default=100,
                    min=0,
                    max=100000,
                    tooltip="Optimizer steps between checkpoints (0: none on the way). Cancel keeps the last one; "
                    "the finished state is always kept, so a failed save loses nothing.",
                ),
                io.Boolean.Input(
                    "gradient_checkpointing",
                    default=False,
                    tooltip="Recompute activations in the backward pass: much less memory, ~30% slower.",
                ),
                io.Combo.Input(
                    "training_dtype",
                    options=["auto", *DTYPES],
                    default="auto",
                    tooltip="Autocast dtype of the forward pass (LoRA weights stay fp32). auto: bf16 on a GPU "
                    "that supports it, else fp32.",
                ),
                io.Mask.Input(
                    "regular_masks",
                    optional=True,
                    tooltip="Optional masks for the regular images (same order as DreamMix Regular Data's images "
                    "output, e.g. through a segmentation node) replacing the stored heuristic masks.",
                ),
            ],
            outputs=[
                io.Model.Output(
                    "trained_model",
                    display_name="model",
                    tooltip="The input model with the trained LoRA applied (a clone).",
                ),
                io.String.Output(
                    "lora_file", display_name="lora_name", tooltip="The saved LoRA's file name in the loras folder."
                ),
                io.Image.Output(
                    "loss_curve", display_name="loss_curve", tooltip="Loss per optimizer step and its moving average."
                ),
            ],
        )

    @classmethod
    def execute(cls, model, clip, vae, subject_images, subject_masks, **kwargs) -> io.NodeOutput:
        options = {key: first_value(value) for key, value in kwargs.items() if key != "regular_masks"}
        file_name, lora_path = _lora_path(options["lora_name"])
        host = ComfyTrainingHost(first_value(model), first_value(clip), first_value(vae), options["training_dtype"])
        recipe = LoraRecipe(**{key: options[key] for key in _RECIPE_INPUTS}, targets=options["target_modules"])
        settings = LoopSettings(**{key: options[key] for key in _LOOP_INPUTS})
        regular = []
        if options["regular_dataset"].strip() and recipe.regular_probability > 0:
            regular = _regular_data(options["regular_dataset"], flat_list(kwargs.get("regular_masks") or [], "mask"))
        progress = comfy.utils.ProgressBar(settings.steps)
        result = train_subject_lora(
            host,
            flat_list(subject_images, "image"),
            flat_list(subject_masks, "mask"),
            options["instance_prompt"],
            lora_path,
            settings,
            recipe,
            regular,
            recompute=options["gradient_checkpointing"],
            check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted,
            on_step=lambda step, total, loss: progress.update_absolute(step, total),
        )
        LOG.info("DreamMix: saved %s (%d steps, last loss %.4f)", lora_path, result.step, result.losses[-1])
        curve = np.asarray(loss_curve_image(result.losses), dtype=np.float32) / 255
        return io.NodeOutput(host.trainer, file_name, torch.from_numpy(curve)[None])


_RECIPE_INPUTS = ("rank", "alpha", "resolution", "subject_copies", "regular_copies", "regular_probability")
"""The node's inputs that are `LoraRecipe` fields of the same name (target_modules is its `targets`)."""
_LOOP_INPUTS = ("steps", "learning_rate", "grad_accumulation", "seed", "inside_weight", "outside_weight",
                "checkpoint_every")  # fmt: skip
"""The node's inputs that are `LoopSettings` fields of the same name."""


def _lora_path(lora_name: str) -> tuple[str, str]:
    """(file name, path) in the first loras folder; refused before training if it cannot be written there."""
    name = lora_name.strip().removesuffix(".safetensors")
    root = folder_paths.get_folder_paths("loras")[0]
    path = confined_path(root, name + ".safetensors", "lora_name")
    if not name or any(char in name for char in _UNWRITABLE):
        raise DreamMixInputError(f"'{lora_name}' is not a usable LoRA name: use letters, digits, - and _.")
    longest = _NAME_MAX - len(CHECKPOINTS_SUFFIX)  # the checkpoint folder's name must fit too
    if len(os.path.basename(name)) > longest:
        raise DreamMixInputError(
            f"lora_name is too long ({len(os.path.basename(name))} characters): keep it to {longest} or fewer."
        )
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as error:
        raise DreamMixInputError(f"The LoRA cannot be written to {os.path.dirname(path)}: {error}") from None
    return name + ".safetensors", path


_UNWRITABLE = '<>:"|?*'
"""Characters no file name may hold on every system ComfyUI runs on (Windows refuses them)."""
_NAME_MAX = 255
"""The longest file name common file systems take, in bytes (ext4, NTFS, APFS)."""


def _regular_data(regular_dataset: str, regular_masks: list[torch.Tensor]) -> list[tuple[str, torch.Tensor, ...]]:
    """(prompt, image, mask) of each regular image of a DreamMix Regular Data folder; `regular_masks`, when given,
    replace the stored masks (resized to their sizes)."""
    folder = dataset_root(regular_dataset)
    if not os.path.isdir(folder):
        raise DreamMixInputError(f"The regular dataset folder {folder} does not exist: run DreamMix Regular Data.")
    items = read_regular_dataset(folder)
    if not items:
        raise DreamMixInputError(f"{folder} holds no regular images with masks: run DreamMix Regular Data.")
    if regular_masks and len(regular_masks) != len(items):
        raise DreamMixInputError(f"{len(regular_masks)} regular masks for {len(items)} regular images.")
    if not regular_masks:
        return items
    return [
        (prompt, image, comfy.utils.common_upscale(given[None, None].float(), mask.shape[1], mask.shape[0],
                                                   "bilinear", "disabled")[0, 0])
        for (prompt, image, mask), given in zip(items, regular_masks)
    ]  # fmt: skip
