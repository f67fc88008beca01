"""The subject LoRA of method.md §4, trained the same way on every host.

`train_subject_lora` is the recipe: the Attribute Decoupling Mechanism's training copies (`data.expand`),
their mixing, the mask-weighted loss and the resumable loop (`loop.train`), and the LoRA file
(`lora_file`) with its record. A host is what differs between ComfyUI and diffusers: how a LoRA is
attached to its denoiser, how images and prompts are encoded, how a noisy latent is made and
predicted, and how the LoRA's matrices are named in the file. It implements `TrainingHost`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from ..masks import check_mask_count
from .data import REGULAR_COPIES, REGULAR_PROBABILITY, SUBJECT_COPIES, Copy, MixSampler, Photo, expand
from .loop import Example, LoopSettings, Predict, TrainingResult, run_fingerprint, train, training_blocks
from .lora_file import TrainingRecord, checkpoint_folder, refuse_existing, save_lora
from .lora_targets import KV_OUT
from .loss import latent_mask


@dataclass(frozen=True)
class LoraRecipe:
    """The LoRA and its training set; defaults are method.md §4's."""

    rank: int = 4
    alpha: float = 4.0
    targets: str = KV_OUT
    """One of `lora_targets.RECIPES`."""
    resolution: int = 0
    """Side of the square training crops; 0: the host model's native size (512 for SD1.5, 1024 for SDXL/FLUX)."""
    subject_copies: int = SUBJECT_COPIES
    regular_copies: int = REGULAR_COPIES
    regular_probability: float = REGULAR_PROBABILITY


class TrainingHost(Protocol):
    """What `train_subject_lora` needs of the model it trains, in the order it asks."""

    family: str
    """The model family written into the LoRA file's record (`families.family_name`)."""
    inpainting: bool
    """Whether the denoiser takes the mask and the masked image (inpainting-mode training)."""
    num_timesteps: int
    """How many training timesteps `predictor`'s timestep indexes."""

    def native_side(self) -> int:
        """The training side when the recipe gives none."""

    def attach_lora(self, recipe: LoraRecipe, seed: int) -> dict[str, torch.nn.Parameter]:
        """Give the denoiser the recipe's LoRA (up = 0, down drawn from `seed`); its trainable parameters by name.
        Refuses a model it cannot adapt."""

    def encode(self, copies: list[Copy], prompts: list[str], side: int) -> list[tuple[int, ...]]:
        """Encode every copy (and its prompt) once, before training; each copy's latent shape."""

    def predictor(self) -> Predict:
        """predict(index, noise, timestep) of the encoded copies, for `loop.train`."""

    def blocks(self) -> list[torch.nn.Module]:
        """The denoiser's transformer blocks (`loop.training_blocks`)."""

    def training(self) -> AbstractContextManager[None]:
        """The state the loop runs in (gradients on, the model where it trains); the LoRA frozen on exit."""

    def lora_pairs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{module name in the LoRA file: (up, down)} of the trained LoRA."""


def train_subject_lora(
    host: TrainingHost,
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    instance_prompt: str,
    lora_path: str,
    settings: LoopSettings = LoopSettings(),
    recipe: LoraRecipe = LoraRecipe(),
    regular: Sequence[tuple[str, torch.Tensor, torch.Tensor]] = (),
    recompute: bool = False,
    check_interrupt: Callable[[], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainingResult:
    """Train a subject LoRA into `host`'s model (it keeps the LoRA) and write it to `lora_path`.

    `images` are (H, W, 3) floats in [0, 1] with (H, W) object `masks`, one mask for all photos or one each;
    `regular` holds (prompt, image, mask) of the regular data, left out when `recipe.regular_probability` is 0.
    Checkpoints go to `<lora_path without .safetensors>.checkpoints/`, and a run started again with the same
    inputs resumes from the latest one. `recompute` turns on gradient checkpointing. An existing `lora_path` is
    refused before any work.
    """
    refuse_existing(lora_path)
    check_mask_count(len(masks), len(images), "subject photo")
    params = host.attach_lora(recipe, settings.seed)
    side = recipe.resolution or host.native_side()
    regular = regular if recipe.regular_probability > 0 else ()
    prompts = [instance_prompt.strip(), *dict.fromkeys(prompt.strip() for prompt, _, _ in regular)]
    subject = [Photo(image.float().cpu(), masks[i % len(masks)].float().cpu(), 0) for i, image in
               enumerate(images)]  # fmt: skip
    others = [Photo(image.float().cpu(), mask.float().cpu(), prompts.index(p.strip())) for p, image, mask in regular]
    copies = expand(subject, others, side, settings.seed, recipe.subject_copies, recipe.regular_copies)
    settings = replace(settings, num_timesteps=host.num_timesteps)
    run_id = run_fingerprint(
        settings, copies, prompts, side, rank=recipe.rank, alpha=recipe.alpha, targets=recipe.targets,
        copy_counts=(recipe.subject_copies, recipe.regular_copies), regular_probability=recipe.regular_probability,
    )  # fmt: skip

    shapes = host.encode(copies, prompts, side)
    examples = [Example(shape, latent_mask(copy.mask[None], shape[-2:])[0]) for shape, copy in zip(shapes, copies)]
    subject_count = sum(not copy.regular for copy in copies)
    sampler = MixSampler(subject_count, len(copies) - subject_count, recipe.regular_probability)
    predict = host.predictor()
    with host.training(), training_blocks(host.blocks(), recompute):
        result = train(
            params,
            examples,
            sampler,
            predict,
            settings,
            run_id=run_id,
            checkpoint_folder=checkpoint_folder(lora_path),
            check_interrupt=check_interrupt,
            on_step=on_step,
        )
    record = TrainingRecord(
        instance_prompt, result.step, recipe.rank, recipe.alpha, settings.seed, side, recipe.targets, host.inpainting,
        host.family,
    )  # fmt: skip
    save_lora(lora_path, host.lora_pairs(), record)
    return result
