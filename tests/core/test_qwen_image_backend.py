"""Qwen-Image's flow path in the core tier: DreamMix on a tiny diffusers Qwen-Image transformer and Qwen-Image VAE,
with QwenImagePipeline's own helpers and equations as the reference."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler
from tiny_models import FLOW_CHANNELS as CHANNELS
from tiny_models import assert_dreammix_keeps_the_background_exact, tiny_qwen_image

from dreammix_core import Stage
from dreammix_core.inpainting.diffusers_qwen_image_backend import QwenImageDiffusersBackend, QwenImagePrompt


def tiny_qwen_vae() -> AutoencoderKLQwenImage:
    """Three spatial halvings (8x, as the released VAE), 4 latent channels with their own mean and std."""
    torch.manual_seed(4)
    return AutoencoderKLQwenImage(
        base_dim=8, z_dim=CHANNELS, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.5, -0.25, 0.1, 0.0], latents_std=[2.0, 1.5, 0.5, 1.0],
    ).eval()  # fmt: skip


def prompt(seed: int) -> QwenImagePrompt:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(1, 10, dtype=torch.long)
    mask[:, 8:] = 0  # two padding tokens, as a batch of prompts of different lengths pads
    return QwenImagePrompt(torch.randn(1, 10, 16, generator=generator), mask)


def backend() -> QwenImageDiffusersBackend:
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
        time_shift_type="exponential",
    )  # fmt: skip  # Qwen-Image's scheduler config
    return QwenImageDiffusersBackend(tiny_qwen_image(), tiny_qwen_vae(), scheduler, prompt(0))


def test_dreammix_on_qwen_image_keeps_the_background_exact() -> None:
    assert_dreammix_keeps_the_background_exact(backend(), steps=3)


def test_the_latent_is_the_vaes_normalised_as_qwen_image_pipelines() -> None:
    """encode: the VAE's 5-D latent of one frame, (z − mean) / std per channel, the frame dropped; decode inverts the
    normalisation before the VAE (QwenImagePipeline's `latents / (1 / std) + mean`)."""
    qwen = backend()
    image = torch.rand(1, 32, 48, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        raw = qwen.vae.encode(image.movedim(-1, 1).unsqueeze(2) * 2 - 1).latent_dist.mode()
    mean = torch.tensor([0.5, -0.25, 0.1, 0.0]).view(1, 4, 1, 1, 1)
    std = torch.tensor([2.0, 1.5, 0.5, 1.0]).view(1, 4, 1, 1, 1)
    latent = qwen.encode(image)
    torch.testing.assert_close(latent, ((raw - mean) / std)[:, :, 0])
    with torch.no_grad():
        pixels = qwen.vae.decode(latent.unsqueeze(2) / (1 / std) + mean).sample[:, :, 0]
    torch.testing.assert_close(qwen.decode(latent), ((pixels + 1) / 2).clamp(0, 1).movedim(1, -1))


def test_velocity_is_the_transformer_called_as_qwen_image_pipeline_calls_it() -> None:
    """QwenImagePipeline's own packing and unpacking, timestep = σ (it passes t / 1000 with t = 1000 σ), the prompt
    mask, and img_shapes of (frames, rows, columns) of 2x2 patches."""
    from diffusers import QwenImagePipeline

    qwen = backend()
    x = torch.randn(2, CHANNELS, 6, 10, generator=torch.Generator().manual_seed(8))
    sigma = torch.tensor(0.7)
    with torch.no_grad():
        reference = qwen.transformer(
            hidden_states=QwenImagePipeline._pack_latents(x, 2, CHANNELS, 6, 10),
            encoder_hidden_states=qwen.positive.tokens.expand(2, -1, -1),
            encoder_hidden_states_mask=qwen.positive.mask.expand(2, -1),
            timestep=sigma.expand(2),
            img_shapes=[[(1, 3, 5)]] * 2,
            return_dict=False,
        )[0]
        velocity = qwen._velocity(x, sigma, qwen.positive)
    unpacked = QwenImagePipeline._unpack_latents(reference, 48, 80, 8)  # (B, C, 1, H, W)
    torch.testing.assert_close(velocity, unpacked[:, :, 0])


def test_a_prompt_without_padding_may_have_no_mask() -> None:
    """encode_prompt gives no mask when every token counts: the same velocity as an all-ones mask."""
    qwen = backend()
    tokens = prompt(1).tokens
    x = torch.randn(1, CHANNELS, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unmasked = qwen._velocity(x, torch.tensor(0.5), QwenImagePrompt(tokens))
        ones = qwen._velocity(x, torch.tensor(0.5), QwenImagePrompt(tokens, torch.ones(1, 10, dtype=torch.long)))
    torch.testing.assert_close(unmasked, ones)


def test_a_stage_runs_qwen_image_pipelines_shifted_schedule() -> None:
    """The stage's σ are QwenImagePipeline's: linspace(1, 1/steps), shifted by calculate_shift of the token count
    with the scheduler's anchors (exponential time shift); steps [0, 2) of 2 on an 8x8 latent, written out."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift

    qwen = backend()
    known = torch.randn(1, CHANNELS, 8, 8, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(1, 64, 64)
    result = qwen.denoise(Stage("global", known, torch.zeros(1, 64, 64, 3), mask, 0, 2, 2, seed=7))

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(qwen.scheduler.config)
    config = qwen.scheduler.config
    mu = calculate_shift(16, config.base_image_seq_len, config.max_image_seq_len, config.base_shift, config.max_shift)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 2, 2), mu=mu)
    sigmas = scheduler.sigmas
    x = torch.randn(known.shape, generator=torch.Generator().manual_seed(7))  # σ_0 = 1: pure noise
    for index in (0, 1):
        with torch.no_grad():
            velocity = qwen._velocity(x, sigmas[index], qwen.positive)
        x = x + (sigmas[index + 1] - sigmas[index]) * velocity
    torch.testing.assert_close(result.latent, x, atol=1e-5, rtol=1e-5)
