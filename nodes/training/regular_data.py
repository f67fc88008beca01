"""DreamMix Regular Data: the ADM's regular images, generated with the base model into a dataset folder.

The folder format (one sub-folder per prompt, image + mask pairs, never overwritten) is
`dreammix_core.training.regular_data`; this node samples with ComfyUI and writes through it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import comfy.model_management
import comfy.sample
import comfy.utils
import folder_paths
import latent_preview
import torch
from comfy_api.latest import io

from ...dreammix_core.attributes.prompts import check_regular_prompts
from ...dreammix_core.errors import DreamMixInputError
from ...dreammix_core.paths import confined_path
from ...dreammix_core.training.data import background_difference_mask
from ...dreammix_core.training.regular_data import (
    batches,
    image_paths,
    image_seed,
    load_pair,
    missing_images,
    prompt_folder,
    save_pair,
)
from .. import inputs
from ..comfy_backend import check_model_inputs, native_resolution, spatial_factor

CATEGORY = "DreamMix/training"
LOG = logging.getLogger("DreamMix")


def dataset_root(folder: str) -> str:
    """The regular-data folder, always inside ComfyUI's output directory (empty: dreammix_regular)."""
    root = confined_path(folder_paths.get_output_directory(), folder.strip() or "dreammix_regular", "dataset_folder")
    if os.path.exists(root) and not os.path.isdir(root):
        raise DreamMixInputError(f"dataset_folder {root} is a file, not a folder: choose another name.")
    return root


class DreamMixRegularData(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixRegularData",
            display_name="DreamMix Regular Data (ADM)",
            category=CATEGORY,
            description="Generates the Attribute Decoupling Mechanism's regular data: N images per regular prompt "
            "with the base model, each with an object mask, into a dataset folder. Existing images are reused, "
            "never overwritten, so a re-run only generates what is missing.",
            inputs=[
                io.Model.Input("model", tooltip="The base model (the one the subject LoRA will be trained on)."),
                io.Clip.Input("clip", tooltip="The base model's text encoder."),
                io.Vae.Input("vae", tooltip="The base model's VAE, to decode the generated images."),
                io.String.Input(
                    "regular_prompts",
                    multiline=True,
                    default="a photo of a teapot\na photo of a clay teapot",
                    tooltip="One prompt per line, with and without the subject's attributes, never with the "
                    "identifier token (e.g. DreamMix Attribute Refine's regular_prompts output).",
                ),
                io.Int.Input(
                    "images_per_prompt", default=30, min=1, max=1000, tooltip="Images per prompt (paper: ~30)."
                ),
                io.String.Input(
                    "dataset_folder",
                    default="dreammix_regular",
                    tooltip="Where the images go: a folder inside ComfyUI's output directory (paths leading "
                    "elsewhere are refused). One sub-folder per prompt; images already there are kept and reused.",
                ),
                inputs.resolution(
                    "Side of the square images; 0 = the model family's native (512 SD1.5, 1024 SDXL).",
                    inputs.MAX_TRAINING_RESOLUTION,
                ),
                inputs.steps(25, 200, "Sampling steps per image."),
                inputs.cfg(6.0, 30.0, "Classifier-free guidance; 1 for FLUX.1 [dev] and Fill (guidance-distilled)."),
                inputs.sampler("euler", "Sampler."),
                inputs.scheduler("normal", "Scheduler."),
                inputs.seed(
                    "Base seed; image i of a prompt uses a seed derived from this, the prompt and i.",
                    control_after_generate=False,
                ),
                io.String.Input(
                    "background_suffix",
                    default=", centered, isolated on a plain white background",
                    tooltip="Appended to each prompt for generation only (the stored training prompt is the plain "
                    "one): a plain background lets the mask heuristic find the object.",
                ),
                io.String.Input(
                    "negative_prompt", default="blurry, cropped, text", tooltip="Negative prompt for generation."
                ),
                io.Float.Input(
                    "mask_threshold",
                    default=0.15,
                    min=0.01,
                    max=1.0,
                    step=0.01,
                    tooltip="Colour distance to the background (median of the image border) above which a pixel "
                    "is object. Falls back to a centred ellipse when the background is not plain.",
                ),
                io.Int.Input(
                    "batch_size",
                    default=1,
                    min=1,
                    max=64,
                    optional=True,
                    tooltip="Images of one prompt sampled together: much faster on a GPU, more memory. Each image "
                    "keeps its own seed, so the files match one-by-one generation (up to rounding; ancestral and "
                    "SDE samplers draw their extra noise per batch).",
                ),
            ],
            outputs=[
                io.String.Output(
                    "dataset", display_name="dataset", tooltip="The dataset folder, for DreamMix Train Subject LoRA."
                ),
                io.Image.Output(
                    "images", display_name="images", tooltip="All images of this run's prompts, prompt by prompt."
                ),
                io.Mask.Output("masks", display_name="masks", tooltip="Their object masks, in the same order."),
            ],
        )

    @classmethod
    def execute(
        cls, model, clip, vae, regular_prompts, images_per_prompt, dataset_folder, resolution, **sampling
    ) -> io.NodeOutput:
        prompts = [line.strip() for line in regular_prompts.splitlines() if line.strip()]
        if not prompts:
            raise DreamMixInputError("Type at least one regular prompt (one per line).")
        check_regular_prompts(prompts)
        if clip is None:
            raise DreamMixInputError("No CLIP is connected: regular images need the base model's text encoder.")
        check_model_inputs(model, vae, {})
        root = dataset_root(dataset_folder)
        todo = missing_images(root, prompts, images_per_prompt)
        LOG.info("DreamMix regular data: %d images to generate, the rest reused, in %s", len(todo), root)
        _generate(model, clip, vae, todo, resolution or native_resolution(model), _Sampling(**sampling))
        return io.NodeOutput(root, *_stored_images(root, prompts, images_per_prompt))


@dataclass(frozen=True)
class _Sampling:
    """The node's inputs that say how regular images are sampled and masked."""

    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    seed: int
    background_suffix: str
    negative_prompt: str
    mask_threshold: float
    batch_size: int = 1  # absent from workflows saved before the input existed


def _generate(model, clip, vae, todo: list, side: int, options: _Sampling) -> None:
    """Samples the missing images (prompt, folder, index) of `todo`, batch by batch, and saves each with its
    background-difference mask."""
    cell = spatial_factor(vae)
    progress = comfy.utils.ProgressBar(max(len(todo), 1))
    conds = {}
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(options.negative_prompt))
    done = 0
    for batch in batches(todo, options.batch_size):
        comfy.model_management.throw_exception_if_processing_interrupted()
        prompt = batch[0][0]
        if prompt not in conds:
            conds[prompt] = clip.encode_from_tokens_scheduled(clip.tokenize(prompt + options.background_suffix))
        seeds = [image_seed(options.seed, prompt, i) for _, _, i in batch]
        latent = torch.zeros(len(batch), vae.latent_channels, side // cell, side // cell)
        latent = comfy.sample.fix_empty_latent_channels(model, latent)  # a video latent (Qwen-Image's) has frames
        noise = torch.cat([comfy.sample.prepare_noise(latent[:1], seed_i) for seed_i in seeds])
        callback = latent_preview.prepare_callback(model, options.steps)
        samples = comfy.sample.sample(
            model,
            noise,
            options.steps,
            options.cfg,
            options.sampler_name,
            options.scheduler,
            conds[prompt],
            negative,
            latent,
            callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
            seed=seeds[0],
        )
        decoded = vae.decode(samples).float()
        for image, (_, folder, i) in zip(decoded.reshape((-1,) + tuple(decoded.shape[-3:])), batch):
            save_pair(folder, i, image, background_difference_mask(image, options.mask_threshold))
        done += len(batch)
        progress.update_absolute(done)


def _stored_images(root: str, prompts: list[str], images_per_prompt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, masks) of the dataset's images of `prompts`, as batches: resized to the first one's size where
    folders were made at another resolution."""
    images, masks = [], []
    for prompt in prompts:
        folder = prompt_folder(root, prompt)
        for i in range(images_per_prompt):
            pair = load_pair(*image_paths(folder, i))
            if pair is not None:
                images.append(pair[0])
                masks.append(pair[1])
    if not images:
        raise DreamMixInputError(f"Every image in {root} is unreadable: delete the damaged files to regenerate them.")
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:  # folders made at another resolution: preview at the first size
        h, w = images[0].shape[:2]
        images = [
            comfy.utils.common_upscale(x.movedim(-1, 0)[None], w, h, "bilinear", "center")[0].movedim(0, -1)
            for x in images
        ]
        masks = [comfy.utils.common_upscale(m[None, None], w, h, "bilinear", "center")[0, 0] for m in masks]
    return torch.stack(images), torch.stack(masks)
