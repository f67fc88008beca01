"""Subject LoRA training with the Attribute Decoupling Mechanism (method.md §4), inside ComfyUI.

Two nodes:
  DreamMixRegularData      generates the ADM regular images (N per regular prompt) with the base model
                           and an object mask each, into a dataset folder; re-runs reuse what exists.
  DreamMixTrainSubjectLoRA trains the per-subject LoRA on the subject photos + regular data, with
                           Bézier mask augmentation, the mask-weighted loss, checkpoints that resume
                           exactly, and saves a LoRA that LoraLoader / LoraLoaderModelOnly load.

The LoRA layers are ComfyUI's own training adapters (`comfy.weight_adapter.lora.LoraDiff`) attached
with `ModelPatcher.add_weight_wrapper`, the mechanism ComfyUI's TrainLoraNode uses: the base weights
stay untouched and shared, ModelPatcher moves the adapters with the model when it loads or offloads
it, and the returned MODEL is an ordinary patched clone. The loop itself is `dreammix_core.training_loop`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

import comfy.lora
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import latent_preview
import numpy as np
import torch
from comfy.weight_adapter.lora import LoraDiff
from comfy_api.latest import io
from PIL import Image

from ..dreammix_core.attributes import check_regular_prompts
from ..dreammix_core.errors import DreamMixInputError
from ..dreammix_core.lora_file import (
    CHECKPOINTS_SUFFIX,
    TARGETS,
    TrainingRecord,
    checkpoint_folder,
    refuse_existing,
    save_lora,
)
from ..dreammix_core.paths import confined_path
from ..dreammix_core.training_data import (
    REGULAR_COPIES,
    REGULAR_PROBABILITY,
    SUBJECT_COPIES,
    MixSampler,
    Photo,
    background_difference_mask,
    expand,
    masked_image,
)
from ..dreammix_core.training_loop import (
    Example,
    LoopSettings,
    loss_curve_image,
    run_fingerprint,
    tensor_digest,
    train,
    transformer_blocks,
)
from ..dreammix_core.training_loop import gradient_checkpointing as recompute_in_backward
from ..dreammix_core.training_loss import INSIDE_WEIGHT, OUTSIDE_WEIGHT, latent_mask
from .comfy_backend import native_resolution
from .list_inputs import first_value, flat_list

CATEGORY = "DreamMix/training"
LOG = logging.getLogger("DreamMix")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PROMPT_FILE = "prompt.txt"
MASK_SUFFIX = "_mask.png"


def _save_png(array: torch.Tensor, path: str) -> None:
    """Write an image (H, W, 3) or mask (H, W) in [0, 1] without ever replacing a file."""
    pixels = (array.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    with open(path, "xb") as handle:  # "x": refuse to overwrite
        Image.fromarray(pixels).save(handle, format="PNG")


def _load_png(path: str, mask: bool = False) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert("L" if mask else "RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array.copy())


def _slug(prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:60] or "prompt"
    return f"{words}_{hashlib.sha1(prompt.encode()).hexdigest()[:6]}"


def dataset_root(folder: str) -> str:
    """The regular-data folder, always inside ComfyUI's output directory (empty: dreammix_regular)."""
    root = confined_path(folder_paths.get_output_directory(), folder.strip() or "dreammix_regular", "dataset_folder")
    if os.path.exists(root) and not os.path.isdir(root):
        raise DreamMixInputError(f"dataset_folder {root} is a file, not a folder: choose another name.")
    return root


def read_regular_dataset(folder: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(prompt, image (H, W, 3), mask (H, W)) of every image in a DreamMixRegularData folder, sorted."""
    items = []
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub)
        if not os.path.isfile(os.path.join(path, PROMPT_FILE)):
            continue
        with open(os.path.join(path, PROMPT_FILE), encoding="utf-8") as handle:
            prompt = handle.read().strip()
        for name in sorted(os.listdir(path)):
            if name.endswith(".png") and not name.endswith(MASK_SUFFIX):
                mask_path = os.path.join(path, name[: -len(".png")] + MASK_SUFFIX)
                pair = _load_pair(os.path.join(path, name), mask_path) if os.path.isfile(mask_path) else None
                if pair is not None:
                    items.append((prompt, *pair))
    return items


def _load_pair(image_path: str, mask_path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A regular image and its mask; None, with a warning naming the file, when either is damaged."""
    try:
        return _load_png(image_path), _load_png(mask_path, mask=True)
    except (OSError, ValueError) as error:  # a damaged file: use the others, say which
        LOG.warning("DreamMix: skipping unreadable regular image %s (%s)", image_path, error)
        return None


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
                io.Int.Input(
                    "resolution",
                    default=0,
                    min=0,
                    max=4096,
                    step=64,
                    tooltip="Side of the square images; 0 = the model family's native (512 SD1.5, 1024 SDXL).",
                ),
                io.Int.Input("steps", default=25, min=1, max=200, tooltip="Sampling steps per image."),
                io.Float.Input("cfg", default=6.0, min=0.0, max=30.0, step=0.1, tooltip="Classifier-free guidance."),
                io.Combo.Input(
                    "sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler", tooltip="Sampler."
                ),
                io.Combo.Input(
                    "scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal", tooltip="Scheduler."
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=False,
                    tooltip="Base seed; image i of a prompt uses a seed derived from this, the prompt and i.",
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
        cls,
        model,
        clip,
        vae,
        regular_prompts,
        images_per_prompt,
        dataset_folder,
        resolution,
        steps,
        cfg,
        sampler_name,
        scheduler,
        seed,
        background_suffix,
        negative_prompt,
        mask_threshold,
    ) -> io.NodeOutput:
        prompts = [line.strip() for line in regular_prompts.splitlines() if line.strip()]
        if not prompts:
            raise DreamMixInputError("Type at least one regular prompt (one per line).")
        check_regular_prompts(prompts)
        if clip is None:
            raise DreamMixInputError("No CLIP is connected: regular images need the base model's text encoder.")
        side = resolution or native_resolution(model)
        root = dataset_root(dataset_folder)
        todo = []
        for prompt in prompts:
            folder = os.path.join(root, _slug(prompt))
            os.makedirs(folder, exist_ok=True)
            prompt_file = os.path.join(folder, PROMPT_FILE)
            if not os.path.isfile(prompt_file):
                with open(prompt_file, "x", encoding="utf-8") as handle:
                    handle.write(prompt)
            for i in range(images_per_prompt):
                if not os.path.isfile(os.path.join(folder, f"{i:04d}{MASK_SUFFIX}")):
                    todo.append((prompt, folder, i))
        LOG.info("DreamMix regular data: %d images to generate, the rest reused, in %s", len(todo), root)
        progress = comfy.utils.ProgressBar(max(len(todo), 1))
        conds = {}
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(negative_prompt))
        for done, (prompt, folder, i) in enumerate(todo):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if prompt not in conds:
                conds[prompt] = clip.encode_from_tokens_scheduled(clip.tokenize(prompt + background_suffix))
            image_seed = (seed + int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16) + i) % 2**63
            latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros(1, 4, side // 8, side // 8))
            noise = comfy.sample.prepare_noise(latent, image_seed)
            callback = latent_preview.prepare_callback(model, steps)
            samples = comfy.sample.sample(
                model,
                noise,
                steps,
                cfg,
                sampler_name,
                scheduler,
                conds[prompt],
                negative,
                latent,
                callback=callback,
                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                seed=image_seed,
            )
            image = vae.decode(samples)[0].float()
            image_path = os.path.join(folder, f"{i:04d}.png")
            if not os.path.isfile(image_path):
                _save_png(image[..., :3], image_path)
            _save_png(background_difference_mask(image, mask_threshold), os.path.join(folder, f"{i:04d}{MASK_SUFFIX}"))
            progress.update_absolute(done + 1)
        images, masks = [], []
        for prompt in prompts:
            folder = os.path.join(root, _slug(prompt))
            for i in range(images_per_prompt):
                pair = _load_pair(os.path.join(folder, f"{i:04d}.png"), os.path.join(folder, f"{i:04d}{MASK_SUFFIX}"))
                if pair is not None:
                    images.append(pair[0])
                    masks.append(pair[1])
        if not images:
            raise DreamMixInputError(
                f"Every image in {root} is unreadable: delete the damaged files to regenerate them."
            )
        sizes = {tuple(image.shape) for image in images}
        if len(sizes) > 1:  # folders made at another resolution: preview at the first size
            h, w = images[0].shape[:2]
            images = [
                comfy.utils.common_upscale(x.movedim(-1, 0)[None], w, h, "bilinear", "center")[0].movedim(0, -1)
                for x in images
            ]
            masks = [comfy.utils.common_upscale(m[None, None], w, h, "bilinear", "center")[0, 0] for m in masks]
        return io.NodeOutput(root, torch.stack(images), torch.stack(masks))


def diffusers_names(model, modules: list[str]) -> dict[str, str]:
    """ComfyUI module name → its diffusers name where ComfyUI knows one, else the ComfyUI name without its prefix.

    LoraLoader maps both `lora_unet_<diffusers name>` and `lora_unet_<ComfyUI name>` (comfy.lora.model_lora_keys_unet);
    the diffusers naming is the common kohya format other tools read too.
    """
    to_diffusers = {}
    unet_config = getattr(model.model.model_config, "unet_config", None)
    if unet_config is not None:
        try:
            to_diffusers = {comfy: diff for diff, comfy in comfy.utils.unet_to_diffusers(unet_config).items()}
        except Exception:  # a UNet layout ComfyUI has no diffusers map for
            to_diffusers = {}
    names = {}
    for module in modules:
        comfy_key = module.removeprefix("diffusion_model.") + ".weight"
        names[module] = to_diffusers.get(comfy_key, comfy_key).removesuffix(".weight")
    return names


def freeze_base_weights(model: torch.nn.Module) -> None:
    """Takes every base weight out of gradient computation, as ordinary tensors autograd may save.

    ComfyUI runs every node, the checkpoint loader included, under `torch.inference_mode`, so loaded
    weights are inference tensors, which autograd refuses to save for the backward pass; and a weight
    left with requires_grad would get a full gradient in every backward. Inference tensors are replaced
    by equal copies (one tensor at a time), so the base MODEL and its other users see the same values.
    Call it outside inference mode. The LoRA adapters are weight functions, not parameters of `model`.
    """
    for name, param in list(model.named_parameters()):
        if param.is_inference():
            comfy.utils.set_attr_param(model, name, param.detach().clone())
        else:
            param.requires_grad_(False)
    for name, buffer in list(model.named_buffers()):
        if buffer.is_inference():
            comfy.utils.set_attr(model, name, buffer.clone())


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
                    tooltip="One mask per photo, 1 on the subject, same sizes as the photos (e.g. from a "
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
                    options=list(TARGETS),
                    default=next(iter(TARGETS)),
                    tooltip="Which UNet attention projections get a LoRA (method: key, value, output; not query).",
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
                io.Int.Input(
                    "resolution",
                    default=0,
                    min=0,
                    max=4096,
                    step=64,
                    tooltip="Training side; 0 = the family's native (512 SD1.5, 1024 SDXL). Lower saves memory.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=False,
                    tooltip="Seeds the LoRA init, the augmentations, the sample order, noise and timesteps.",
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
        opts = {key: first_value(value) for key, value in kwargs.items() if key != "regular_masks"}
        regular_masks = flat_list(kwargs.get("regular_masks") or [], "mask")
        return _train(
            first_value(model),
            first_value(clip),
            first_value(vae),
            flat_list(subject_images, "image"),
            flat_list(subject_masks, "mask"),
            regular_masks,
            **opts,
        )


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


def _train(
    model,
    clip,
    vae,
    images: list[torch.Tensor],
    masks: list[torch.Tensor],
    regular_masks: list[torch.Tensor],
    instance_prompt: str,
    regular_dataset: str,
    lora_name: str,
    steps: int,
    learning_rate: float,
    rank: int,
    alpha: float,
    target_modules: str,
    grad_accumulation: int,
    regular_probability: float,
    inside_weight: float,
    outside_weight: float,
    subject_copies: int,
    regular_copies: int,
    resolution: int,
    seed: int,
    checkpoint_every: int,
    gradient_checkpointing: bool,
    training_dtype: str,
) -> io.NodeOutput:
    file_name, lora_path = _lora_path(lora_name)
    refuse_existing(lora_path)
    checkpoints = checkpoint_folder(lora_path)
    if clip is None:
        raise DreamMixInputError("No CLIP is connected: the prompts need the model's text encoder.")
    if len(images) != len(masks):
        if len(masks) == 1:
            masks = masks * len(images)
        else:
            raise DreamMixInputError(f"{len(images)} subject photos but {len(masks)} masks: give one mask per photo.")
    side = resolution or native_resolution(model)

    prompts = [instance_prompt.strip()]
    regular = []
    if regular_dataset.strip() and regular_probability > 0:
        folder = dataset_root(regular_dataset)
        if not os.path.isdir(folder):
            raise DreamMixInputError(f"The regular dataset folder {folder} does not exist: run DreamMix Regular Data.")
        items = read_regular_dataset(folder)
        if not items:
            raise DreamMixInputError(f"{folder} holds no regular images with masks: run DreamMix Regular Data.")
        if regular_masks and len(regular_masks) != len(items):
            raise DreamMixInputError(f"{len(regular_masks)} regular masks for {len(items)} regular images.")
        for i, (prompt, image, mask) in enumerate(items):
            if regular_masks:
                mask = comfy.utils.common_upscale(
                    regular_masks[i][None, None].float(), mask.shape[1], mask.shape[0], "bilinear", "disabled"
                )[0, 0]
            if prompt not in prompts:
                prompts.append(prompt)
            regular.append(Photo(image, mask, prompts.index(prompt)))
    subject = [Photo(image[..., :3].float().cpu(), mask.float().cpu(), 0) for image, mask in zip(images, masks)]
    copies = expand(subject, regular, side, seed, subject_copies, regular_copies)

    settings = LoopSettings(
        steps=steps,
        learning_rate=learning_rate,
        grad_accumulation=grad_accumulation,
        seed=seed,
        inside_weight=inside_weight,
        outside_weight=outside_weight,
        checkpoint_every=checkpoint_every,
    )
    run_id = run_fingerprint(
        settings, copies, prompts, side, rank=rank, alpha=alpha, targets=target_modules,
        copy_counts=(subject_copies, regular_copies), regular_probability=regular_probability,
    )  # fmt: skip

    # Everything that does not change during training is computed once, before the UNet is loaded.
    base = model.model
    inpainting = len(getattr(base, "concat_keys", ())) > 0
    encoding = comfy.utils.ProgressBar(len(copies))
    encoded_pixels: dict[str, torch.Tensor] = {}

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) latent of (3, R, R) pixels, encoded once per distinct content: every copy of a photo
        already at the training size (regular images, square photos) is the same crop."""
        key = tensor_digest([pixels])
        if key not in encoded_pixels:
            encoded_pixels[key] = vae.encode(pixels.movedim(0, -1)[None]).float().cpu()
        return encoded_pixels[key]

    with torch.inference_mode(False), torch.no_grad():
        encoded = [clip.encode_from_tokens(clip.tokenize(p), return_pooled=True) for p in prompts]
        latents, conds = [], []
        for index, copy in enumerate(copies):
            comfy.model_management.throw_exception_if_processing_interrupted()
            latent = encode(copy.image)
            latents.append(base.process_latent_in(latent)[0])
            embedding, pooled = encoded[copy.prompt]
            extra = {
                "cross_attn": embedding.clone(),
                "width": side,
                "height": side,
                "device": torch.device("cpu"),
                "noise": torch.zeros_like(latent),
            }
            if pooled is not None:
                extra["pooled_output"] = pooled.clone()
            if inpainting:
                extra["concat_latent_image"] = encode(masked_image(copy.image, copy.mask))
                extra["denoise_mask"] = copy.mask[None].clone()
            conds.append({key: value.cond.clone() for key, value in base.extra_conds(**extra).items()})
            encoding.update_absolute(index + 1)
    LOG.info("DreamMix: %d training copies from %d distinct VAE encodes", len(copies), len(encoded_pixels))
    examples = [
        Example(tuple(latent.shape), latent_mask(copy.mask[None], latent.shape[-2:])[0])
        for latent, copy in zip(latents, copies)
    ]
    subject_count = sum(not c.regular for c in copies)
    sampler = MixSampler(subject_count, len(copies) - subject_count, regular_probability)

    trainer = model.clone()
    pattern = re.compile(TARGETS[target_modules])
    generator = torch.Generator().manual_seed(seed)
    adapters: dict[str, LoraDiff] = {}
    params: dict[str, torch.nn.Parameter] = {}
    with torch.inference_mode(False):
        for name, module in trainer.model.named_modules():
            weight = getattr(module, "weight", None)
            if not (
                name.startswith("diffusion_model.") and pattern.search(name) and hasattr(module, "weight_function")
            ):
                continue
            if weight is None or weight.ndim != 2:
                continue
            up = torch.zeros(weight.shape[0], rank)  # peft's "gaussian" init: up = 0, down ~ N(0, 1/rank)
            down = torch.randn(rank, weight.shape[1], generator=generator) / rank
            adapter = LoraDiff((up, down, float(alpha), None, None, None))
            adapter.alpha.requires_grad_(False)
            trainer.add_weight_wrapper(f"{name}.weight", adapter)
            adapters[name] = adapter
            params[f"{name}.lora_up.weight"] = adapter.lora_up.weight
            params[f"{name}.lora_down.weight"] = adapter.lora_down.weight
    if not adapters:
        raise DreamMixInputError(
            "This model has no attention projections this trainer can adapt (SD1.5/SD2/SDXL UNets)."
        )

    device = trainer.load_device
    dtype = DTYPES.get(training_dtype)
    if training_dtype == "auto":
        dtype = torch.bfloat16 if comfy.model_management.should_use_bf16(device) and device.type == "cuda" else None
    sampling = base.model_sampling
    num_timesteps = len(sampling.sigmas) if hasattr(sampling, "sigmas") else 1000
    settings = LoopSettings(**{**settings.__dict__, "num_timesteps": num_timesteps})
    transformer_options = trainer.model_options.get("transformer_options", {})

    def predict_eps(index: int, noise: torch.Tensor, timestep: int) -> torch.Tensor:
        x0 = latents[index][None].to(device)
        sigma = sampling.sigma(torch.tensor([float(timestep)], device=device)).to(device)
        noise = noise.to(device)
        x_t = sampling.noise_scaling(sigma, noise, x0)
        kwargs = {key: value.to(device) for key, value in conds[index].items()}
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            denoised = trainer.model.apply_model(x_t, sigma, transformer_options=transformer_options, **kwargs)
        # ComfyUI models return the denoised latent; the method's loss is on epsilon: eps = (x_t - x0_hat) / sigma
        return (x_t - denoised.float()) / sigma.view(-1, 1, 1, 1)

    progress = comfy.utils.ProgressBar(steps)
    blocks = transformer_blocks(trainer.model.diffusion_model)
    comfy.model_management.unload_all_models()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            comfy.model_management.load_models_gpu([trainer], memory_required=1e20, force_full_load=True)
            freeze_base_weights(trainer.model)
            with recompute_in_backward(blocks, gradient_checkpointing):
                result = train(
                    params,
                    examples,
                    sampler,
                    predict_eps,
                    settings,
                    run_id=run_id,
                    checkpoint_folder=checkpoints,
                    check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted,
                    on_step=lambda step, total, loss: progress.update_absolute(step, total),
                )
    finally:
        comfy.model_management.soft_empty_cache()
    for adapter in adapters.values():
        adapter.requires_grad_(False)

    names = diffusers_names(trainer, list(adapters))
    pairs = {names[module]: (adapter.lora_up.weight, adapter.lora_down.weight) for module, adapter in adapters.items()}
    record = TrainingRecord(instance_prompt, result.step, rank, alpha, seed, side, target_modules, inpainting)
    save_lora(lora_path, pairs, record)
    LOG.info("DreamMix: saved %s (%d steps, last loss %.4f)", lora_path, result.step, result.losses[-1])
    curve = np.asarray(loss_curve_image(result.losses), dtype=np.float32) / 255
    return io.NodeOutput(trainer, file_name, torch.from_numpy(curve)[None])


NODES = [DreamMixRegularData, DreamMixTrainSubjectLoRA]
