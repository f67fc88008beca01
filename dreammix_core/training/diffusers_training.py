"""Subject LoRA training (method.md §4) on diffusers components with a peft LoRA: no ComfyUI needed.

`DiffusersTrainingHost` is the `subject_lora.TrainingHost` of a diffusers SD1.5/SDXL pipeline, so the
recipe, data, loss, loop, checkpoints and LoRA file are the ComfyUI node's (`subject_lora.train_subject_lora`),
and ComfyUI's LoRA loaders read the file. What this host supplies: the LoRA layers are peft's
(`init_lora_weights="gaussian"` is the recipe's init: up = 0, down ~ N(0, 1/rank)), the noisy latent is the
UNet's own training-time noising (`DDPMScheduler.add_noise` on the pipeline's beta schedule), and an
inpainting UNet (9 input channels) gets the latent mask and the masked image's latent after the noisy
latent, as `DiffusersBackend` gives them at inference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers import DDPMScheduler

from ..errors import DreamMixInputError
from ..families import SD_LATENT, family_name, native_side
from ..inpainting.diffusers_backend import encode_prompt, size_conditioning, vae_encode
from ..masks import masked_image
from .data import Copy
from .loop import Predict, transformer_blocks
from .lora_targets import PROJECTION_TARGETS
from .loss import latent_mask
from .subject_lora import LoraRecipe


class DiffusersTrainingHost:
    """A diffusers SD1.5/SDXL pipeline (`unet`, `vae`, `scheduler`, its prompt encoders) as a training host; the
    LoRA stays on `pipe.unet`. `autocast_dtype` (e.g. torch.bfloat16 on a GPU) runs the UNet under autocast."""

    def __init__(self, pipe, autocast_dtype: torch.dtype | None = None) -> None:
        self.pipe, self.unet, self.vae = pipe, pipe.unet, pipe.vae
        self.noising = DDPMScheduler.from_config(pipe.scheduler.config)
        if self.noising.config.prediction_type != "epsilon":
            raise DreamMixInputError(
                f"This UNet predicts {self.noising.config.prediction_type}; the DreamMix loss is on epsilon (SD1.5, "
                "SDXL)."
            )
        self.autocast_dtype = autocast_dtype
        self.sdxl = self.unet.config.addition_embed_type == "text_time"
        self.latent_format = "SDXL" if self.sdxl else SD_LATENT
        self.family = family_name(self.latent_format, self.unet.config.cross_attention_dim)
        self.inpainting = self.unet.config.in_channels == 9
        self.num_timesteps = self.noising.config.num_train_timesteps

    def native_side(self) -> int:
        """The family's training side, as on ComfyUI (an epsilon model: the v-prediction ones are refused above)."""
        return native_side(self.latent_format, v_prediction=False)

    def attach_lora(self, recipe: LoraRecipe, seed: int) -> dict[str, torch.nn.Parameter]:
        """Freeze the UNet and give it a peft LoRA on the recipe's projections. peft draws the initial down weights
        from torch's global generator: it is seeded with `seed` for the draw and restored."""
        from peft import LoraConfig  # imported here: only this training path needs peft

        self.unet.requires_grad_(False)
        config = LoraConfig(
            r=recipe.rank,
            lora_alpha=recipe.alpha,
            init_lora_weights="gaussian",
            target_modules=".*" + PROJECTION_TARGETS[recipe.targets],
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.unet.add_adapter(config)
        return {name: param for name, param in self.unet.named_parameters() if param.requires_grad}

    def encode(self, copies: list[Copy], prompts: list[str], side: int) -> list[tuple[int, ...]]:
        with torch.no_grad():
            self.embeddings = [encode_prompt(self.pipe, prompt) for prompt in prompts]
            self.latents = [vae_encode(self.vae, copy.image.movedim(0, -1)[None]) for copy in copies]
            self.extras = [
                torch.cat([latent_mask(copy.mask[None], latent.shape[-2:]), self._encoded_masked(copy)], dim=1)
                for copy, latent in zip(copies, self.latents)
            ] if self.inpainting else []  # fmt: skip
        self.prompt_of = [copy.prompt for copy in copies]
        self.time_ids = torch.tensor([size_conditioning(side, side)], device=self.unet.device, dtype=self.unet.dtype)
        return [tuple(latent.shape[1:]) for latent in self.latents]

    def _encoded_masked(self, copy: Copy) -> torch.Tensor:
        return vae_encode(self.vae, masked_image(copy.image, copy.mask).movedim(0, -1)[None])

    def predictor(self) -> Predict:
        device, dtype = self.unet.device, self.unet.dtype

        def predict_eps(index: int, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
            t = torch.tensor([timestep], device=device)
            x_t = self.noising.add_noise(self.latents[index].to(device), noise.to(device), t)
            model_in = torch.cat([x_t, self.extras[index].to(device)], dim=1) if self.inpainting else x_t
            prompt = self.embeddings[self.prompt_of[index]]
            added = {"text_embeds": prompt.pooled.to(device, dtype), "time_ids": self.time_ids} if self.sdxl else None
            autocast = self.autocast_dtype
            with torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext():
                out = self.unet(
                    model_in.to(dtype),
                    t,
                    encoder_hidden_states=prompt.tokens.to(device, dtype),
                    added_cond_kwargs=added,
                )
            return out.sample.float(), noise.to(device)

        return predict_eps

    def blocks(self) -> list[torch.nn.Module]:
        return transformer_blocks(self.unet)

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        try:
            with torch.enable_grad():
                yield
        finally:
            self.unet.requires_grad_(False)

    def lora_pairs(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{diffusers module name: (up, down)} of the UNet's peft LoRA (peft's lora_B is up, lora_A down)."""
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.unet)
        modules = sorted(key.removesuffix(".lora_A.weight") for key in state if key.endswith(".lora_A.weight"))
        return {module: (state[f"{module}.lora_B.weight"], state[f"{module}.lora_A.weight"]) for module in modules}
