"""Z-Image's flow path in the core tier: DreamMix on a tiny diffusers Z-Image transformer (FLUX.1's VAE layout),
with ZImagePipeline's own call and schedule as the reference."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from tiny_models import FLOW_CHANNELS as CHANNELS
from tiny_models import assert_dreammix_keeps_the_background_exact, tiny_vae, tiny_z_image

from dreammix_core import Stage
from dreammix_core.inpainting.diffusers_z_image_backend import ZImageDiffusersBackend, ZImagePrompt


def backend() -> ZImageDiffusersBackend:
    prompt = ZImagePrompt(torch.randn(9, 32, generator=torch.Generator().manual_seed(0)))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)  # Z-Image Turbo's scheduler config
    return ZImageDiffusersBackend(tiny_z_image(), tiny_vae(), scheduler, prompt)


def test_dreammix_on_z_image_keeps_the_background_exact() -> None:
    assert_dreammix_keeps_the_background_exact(backend(), steps=3)


def test_velocity_is_minus_the_transformer_called_as_z_image_pipeline_calls_it() -> None:
    """ZImagePipeline: latents unsqueezed to one frame and unbound into a list, timestep (1000 − t) / 1000 with
    t = 1000 σ, one prompt embedding per latent, and noise_pred = −output."""
    z_image = backend()
    x = torch.randn(2, CHANNELS, 6, 10, generator=torch.Generator().manual_seed(8))
    sigma = torch.tensor(0.7)
    t = (1000 * sigma).expand(2)
    with torch.no_grad():
        out = z_image.transformer(
            list(x.unsqueeze(2).unbind(dim=0)), (1000 - t) / 1000, [z_image.positive.tokens] * 2, return_dict=False
        )[0]
        velocity = z_image._velocity(x, sigma, z_image.positive)
    torch.testing.assert_close(velocity, -torch.stack([item.float() for item in out]).squeeze(2))


def test_a_stage_runs_z_image_pipelines_schedule() -> None:
    """Steps [0, 2) of 2 on an 8x8 latent from pure noise, with ZImagePipeline's default sigmas and the scheduler's
    shift 3, written out: x += (σ' − σ)·v."""
    from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

    z_image = backend()
    known = torch.randn(1, CHANNELS, 8, 8, generator=torch.Generator().manual_seed(5))
    result = z_image.denoise(Stage("global", known, torch.zeros(1, 64, 64, 3), torch.ones(1, 64, 64), 0, 2, 2, seed=7))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(sigmas=get_default_z_image_sigmas(2))
    sigmas = scheduler.sigmas
    x = torch.randn(known.shape, generator=torch.Generator().manual_seed(7))
    for index in (0, 1):
        with torch.no_grad():
            velocity = z_image._velocity(x, sigmas[index], z_image.positive)
        x = x + (sigmas[index + 1] - sigmas[index]) * velocity
    torch.testing.assert_close(result.latent, x, atol=1e-5, rtol=1e-5)
