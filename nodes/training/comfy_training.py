"""ComfyUI as a subject-LoRA training host (`dreammix_core.training.subject_lora.TrainingHost`): the LoRA adapters,
the encoded training copies, the prediction and its target (epsilon for SD, velocity for the flow models), the state the
model trains in, and the module names ComfyUI's LoRA loaders read.

The LoRA layers are ComfyUI's own training adapters (`comfy.weight_adapter.lora.LoraDiff`) attached
with `ModelPatcher.add_weight_wrapper`, the mechanism ComfyUI's TrainLoraNode uses: the base weights
stay untouched and shared, ModelPatcher moves the adapters with the model when it loads or offloads
it, and the returned MODEL is an ordinary patched clone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import comfy.model_management
import comfy.model_sampling
import comfy.utils
import torch
from comfy.weight_adapter.lora import LoraDiff

from ...dreammix_core.errors import DreamMixInputError
from ...dreammix_core.masks import masked_image
from ...dreammix_core.training.data import Copy
from ...dreammix_core.training.loop import Predict, tensor_digest, transformer_blocks
from ...dreammix_core.training.lora_targets import adapted_part, restrict
from ...dreammix_core.training.loss import flow_velocity
from ...dreammix_core.training.subject_lora import LoraRecipe
from ..comfy_backend import check_model_inputs, is_inpainting_model, model_family, native_resolution, vae_encode

LOG = logging.getLogger("DreamMix")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""training_dtype choices: the forward pass's autocast dtype (None: fp32)."""


def attach_lora(trainer, target_modules: str, rank: int, alpha: float, seed: int) -> dict[str, LoraDiff]:
    """A LoraDiff on every linear layer of `trainer` (a MODEL clone) that the recipe adapts, keyed by module name,
    held to the adapted part of fused layers (`lora_targets`).

    peft's "gaussian" init: up = 0, down ~ N(0, 1/rank), so the untrained LoRA changes nothing.
    """
    generator = torch.Generator().manual_seed(seed)
    adapters: dict[str, LoraDiff] = {}
    with torch.inference_mode(False):
        for name, module in trainer.model.named_modules():
            weight = getattr(module, "weight", None)
            if not (name.startswith("diffusion_model.") and hasattr(module, "weight_function")):
                continue
            if weight is None or weight.ndim != 2:
                continue
            part = adapted_part(name, tuple(weight.shape), target_modules)
            if part is None:
                continue
            up = torch.zeros(weight.shape[0], rank)
            down = torch.randn(rank, weight.shape[1], generator=generator) / rank
            adapter = LoraDiff((up, down, float(alpha), None, None, None))
            adapter.alpha.requires_grad_(False)
            restrict(adapter.lora_up.weight, adapter.lora_down.weight, part)
            trainer.add_weight_wrapper(f"{name}.weight", adapter)
            adapters[name] = adapter
    if not adapters:
        raise DreamMixInputError(
            "This model has no attention projections this trainer can adapt (SD1.5/SD2/SDXL UNets, FLUX.1, "
            "FLUX.2, Qwen-Image and Z-Image DiTs)."
        )
    return adapters


def trainable_parameters(adapters: dict[str, LoraDiff]) -> dict[str, torch.nn.Parameter]:
    """The loop's named parameters: each adapter's up and down matrices."""
    params = {}
    for name, adapter in adapters.items():
        params[f"{name}.lora_up.weight"] = adapter.lora_up.weight
        params[f"{name}.lora_down.weight"] = adapter.lora_down.weight
    return params


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


def encode_copies(model, clip, vae, copies: list[Copy], prompts: list[str], side: int):
    """(latents, model conditionings) of every copy, computed once before training: nothing here changes
    while the LoRA trains. Each distinct pixel content is VAE-encoded once: every copy of a photo already
    at the training size (regular images, square photos) is the same crop. A prompt's conditioning is what
    CLIPTextEncode gives the sampler (its pooled output, attention mask, ...), passed to the model's own
    `extra_conds` as a sampler passes it."""
    base = model.model
    inpainting = is_inpainting_model(model)
    encoding = comfy.utils.ProgressBar(len(copies))
    encoded_pixels: dict[str, torch.Tensor] = {}

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        key = tensor_digest([pixels])
        if key not in encoded_pixels:
            encoded_pixels[key] = vae_encode(vae, pixels.movedim(0, -1)[None]).float().cpu()
        return encoded_pixels[key]

    with torch.inference_mode(False), torch.no_grad():
        encoded = [clip.encode_from_tokens(clip.tokenize(p), return_dict=True) for p in prompts]
        latents, conds = [], []
        for index, copy in enumerate(copies):
            comfy.model_management.throw_exception_if_processing_interrupted()
            latent = encode(copy.image)
            latents.append(base.process_latent_in(latent)[0])
            conditioning = {key: moved(value) for key, value in encoded[copy.prompt].items() if value is not None}
            extra = {
                **conditioning,
                "width": side,
                "height": side,
                "device": torch.device("cpu"),
                "noise": torch.zeros_like(latent),
            }
            extra["cross_attn"] = extra.pop("cond")
            if inpainting:
                extra["concat_latent_image"] = encode(masked_image(copy.image, copy.mask))
                extra["concat_mask"] = copy.mask[None].clone()
            conds.append({key: moved(value.cond) for key, value in base.extra_conds(**extra).items()})
            encoding.update_absolute(index + 1)
    LOG.info("DreamMix: %d training copies from %d distinct VAE encodes", len(copies), len(encoded_pixels))
    return latents, conds, inpainting


def moved(value, device: torch.device | None = None):
    """A conditioning value copied, or moved to `device`: a tensor, a list of them (reference latents), or a
    constant (Z-Image's token count)."""
    if torch.is_tensor(value):
        return value.clone() if device is None else value.to(device)
    if isinstance(value, list):
        return [moved(item, device) for item in value]
    return value


@contextlib.contextmanager
def training_mode() -> Iterator[None]:
    """ComfyUI's flag for running its models with a backward pass, set as its own trainer sets it: FLUX's rope
    (v0.33) then runs as plain torch instead of comfy_kitchen's forward-only kernel. Older ComfyUI has no flag."""
    if not hasattr(comfy.model_management, "in_training"):
        yield
        return
    previous = comfy.model_management.in_training
    comfy.model_management.in_training = True
    try:
        yield
    finally:
        comfy.model_management.in_training = previous


def autocast_dtype(training_dtype: str, device: torch.device) -> torch.dtype | None:
    """The forward pass's autocast dtype; None is fp32. auto: bf16 on a CUDA GPU that supports it."""
    if training_dtype == "auto":
        return torch.bfloat16 if comfy.model_management.should_use_bf16(device) and device.type == "cuda" else None
    return DTYPES.get(training_dtype)


def predictor(trainer, latents: list[torch.Tensor], conds: list[dict], dtype: torch.dtype | None):
    """predict(index, noise, timestep) of the training loop, on ComfyUI's model and its sampling.

    `timestep` indexes the model's own sigma table (`model_sampling.sigmas`: SD's 1000 training timesteps; a
    FLUX model's 10000 shifted flow times), so the draw follows the family's schedule and shift. ComfyUI models
    return the denoised latent x0_hat; (x_t - x0_hat) / sigma is epsilon's prediction for SD
    (x_t = x0 + sigma·eps) and the velocity's for a flow model (x_t = sigma·noise + (1 - sigma)·x0).
    """
    device = trainer.load_device
    sampling = trainer.get_model_object("model_sampling")  # a ModelSamplingAuraFlow / Flux node's, if one is set
    flow = isinstance(sampling, comfy.model_sampling.CONST)
    transformer_options = trainer.model_options.get("transformer_options", {})

    def predict(index: int, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = latents[index][None].to(device)
        sigma = sampling.sigmas[timestep].reshape(1).to(device)
        noise = noise.to(device)
        x_t = sampling.noise_scaling(sigma, noise, x0)
        kwargs = {key: moved(value, device) for key, value in conds[index].items()}
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            denoised = trainer.model.apply_model(x_t, sigma, transformer_options=transformer_options, **kwargs)
        prediction = (x_t - denoised.float()) / sigma.view(-1, 1, 1, 1)
        return prediction, flow_velocity(noise, x0) if flow else noise

    return predict


class ComfyTrainingHost:
    """A ComfyUI MODEL, CLIP and VAE as a training host. The LoRA goes on `trainer`, a clone of the MODEL, which
    the node returns; the MODEL itself is left as it was. `training_dtype` is one of "auto" and `DTYPES`."""

    def __init__(self, model, clip, vae, training_dtype: str) -> None:
        if clip is None:
            raise DreamMixInputError("No CLIP is connected: the prompts need the model's text encoder.")
        self.model, self.clip, self.vae = model, clip, vae
        self.trainer = model.clone()
        self.dtype = autocast_dtype(training_dtype, self.trainer.load_device)
        self.family = model_family(model)
        self.inpainting = is_inpainting_model(model)
        self.num_timesteps = len(model.get_model_object("model_sampling").sigmas)

    def native_side(self) -> int:
        return native_resolution(self.model)

    def attach_lora(self, recipe: LoraRecipe, seed: int) -> dict[str, torch.nn.Parameter]:
        self.adapters = attach_lora(self.trainer, recipe.targets, recipe.rank, recipe.alpha, seed)
        check_model_inputs(self.model, self.vae, {})  # after: a model no LoRA fits is refused as such first
        return trainable_parameters(self.adapters)

    def encode(self, copies: list[Copy], prompts: list[str], side: int) -> list[tuple[int, ...]]:
        self.latents, self.conds, _ = encode_copies(self.model, self.clip, self.vae, copies, prompts, side)
        return [tuple(latent.shape) for latent in self.latents]

    def predictor(self) -> Predict:
        return predictor(self.trainer, self.latents, self.conds, self.dtype)

    def blocks(self) -> list[torch.nn.Module]:
        return transformer_blocks(self.trainer.model.diffusion_model)

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """The trainer alone in memory, fully loaded, its base weights frozen, gradients on, ComfyUI's training
        flag set; the LoRA frozen and the cache emptied after."""
        comfy.model_management.unload_all_models()
        try:
            with torch.inference_mode(False), torch.enable_grad(), training_mode():
                comfy.model_management.load_models_gpu([self.trainer], memory_required=1e20, force_full_load=True)
                freeze_base_weights(self.trainer.model)
                yield
        finally:
            comfy.model_management.soft_empty_cache()
            for adapter in self.adapters.values():
                adapter.requires_grad_(False)

    def lora_pairs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        names = diffusers_names(self.trainer, list(self.adapters))
        return {names[name]: (lora.lora_up.weight, lora.lora_down.weight) for name, lora in self.adapters.items()}
