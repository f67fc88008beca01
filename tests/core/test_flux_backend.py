"""The flow-matching path in the core tier: DreamMix on a tiny diffusers FLUX transformer with a flow-matching
Euler scheduler, checked against the flow equations written out here."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from tiny_models import assert_dreammix_keeps_the_background_exact, tiny_vae

from dreammix_core import InpaintSettings, Stage, dreammix_inpaint
from dreammix_core.inpainting.blend import feather_mask
from dreammix_core.inpainting.diffusers_flux_backend import (
    FluxDiffusersBackend,
    FluxPrompt,
    image_ids,
    pack,
    shift_mu,
    unpack,
)


def tiny_flux(guidance: bool = True) -> FluxTransformer2DModel:
    torch.manual_seed(3)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=guidance, axes_dims_rope=(4, 4, 8),
    ).eval()  # fmt: skip


def flux_prompt(seed: int) -> FluxPrompt:
    generator = torch.Generator().manual_seed(seed)
    return FluxPrompt(torch.randn(1, 12, 32, generator=generator), torch.randn(1, 16, generator=generator))


def backend(**options) -> FluxDiffusersBackend:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return FluxDiffusersBackend(tiny_flux(), tiny_vae(), scheduler, flux_prompt(0), **options)


def scene(height: int = 136, width: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, height, width)
    mask[:, 40:90, 120:170] = 1
    return image, mask


def test_pack_is_flux_pipelines_token_layout() -> None:
    """Token (row, col) holds channels c of the 2x2 patch in (c, dy, dx) order, as FluxPipeline._pack_latents."""
    latent = torch.arange(2 * 4 * 6, dtype=torch.float32).view(1, 2, 4, 6)
    tokens = pack(latent)
    assert tokens.shape == (1, 2 * 3, 8)
    assert tokens[0, 1 * 3 + 2].tolist() == [
        latent[0, c, 2 + dy, 4 + dx].item() for c in range(2) for dy in range(2) for dx in range(2)
    ]
    assert torch.equal(unpack(tokens, 4, 6), latent)


def test_shift_follows_the_token_count() -> None:
    """FluxPipeline's calculate_shift: 0.5 at 256 tokens, 1.15 at 4096, linear between (hand-checked midpoint)."""
    config = {"base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15}
    assert shift_mu(256, config) == pytest.approx(0.5)
    assert shift_mu(4096, config) == pytest.approx(1.15)
    assert shift_mu(2176, config) == pytest.approx(0.825)


@pytest.mark.parametrize(
    "config, anchors",
    [
        ({}, (256, 4096, 0.5, 1.15)),  # a scheduler config without the keys: FluxPipeline's defaults
        (
            {"base_image_seq_len": 64, "max_image_seq_len": 1024, "base_shift": 0.3, "max_shift": 0.9},
            (64, 1024, 0.3, 0.9),
        ),
    ],
)
def test_shift_reads_each_anchor_from_the_config(config: dict, anchors: tuple) -> None:
    """Against diffusers' own calculate_shift with the same four anchors."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    for tokens in (64, 300, 1000, 5000):
        assert shift_mu(tokens, config) == pytest.approx(calculate_shift(tokens, *anchors), abs=1e-12)


def test_dreammix_on_flux_keeps_the_background_exact() -> None:
    assert_dreammix_keeps_the_background_exact(backend(), steps=4)


def test_a_stage_is_the_flow_euler_loop_with_known_cells_put_back() -> None:
    """Steps [1, 3) of 4 on a 16x16 latent, written out: x = (1-s)x0 + s*eps at the start, x += (s' - s)*v each
    step, unmasked cells set to (1-s')x0 + s'*eps; the estimate is x - s*v of the last step's input."""
    flux = backend()
    known = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 128, 128)
    mask[:, :64, :64] = 1
    keep = torch.zeros(1, 1, 16, 16)
    keep[..., :8, :8] = 1
    stage = Stage("global", known, torch.zeros(1, 128, 128, 3), mask, 1, 3, 4, seed=7)
    result = flux.denoise(stage)

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4))  # FluxPipeline's sigmas, shifted by the config's 3
    sigmas = scheduler.sigmas
    noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(7))
    x = (1 - sigmas[1]) * known + sigmas[1] * noise
    for index in (1, 2):
        with torch.no_grad():
            velocity = flux._velocity(x, sigmas[index], flux.positive)
        estimate = x - sigmas[index] * velocity
        x = x + (sigmas[index + 1] - sigmas[index]) * velocity
        x = keep * x + (1 - keep) * ((1 - sigmas[index + 1]) * known + sigmas[index + 1] * noise)
    torch.testing.assert_close(result.latent, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.denoised, keep * estimate + (1 - keep) * known, atol=1e-5, rtol=1e-5)


def test_guidance_reaches_a_guidance_distilled_model() -> None:
    image = scene(64, 64)[0]
    stage = Stage("global", backend().encode(image), image, torch.ones(1, 64, 64), 0, 2, 2, seed=1)
    low, high = backend(guidance=1.0).denoise(stage), backend(guidance=6.0).denoise(stage)
    assert not torch.equal(low.latent, high.latent)


def test_a_noise_prediction_scheduler_is_refused() -> None:
    from diffusers import EulerDiscreteScheduler

    with pytest.raises(
        TypeError, match=r"^EulerDiscreteScheduler is not a flow-matching scheduler: use FlowMatchEulerDiscrete\.$"
    ):
        FluxDiffusersBackend(tiny_flux(), tiny_vae(), EulerDiscreteScheduler(), flux_prompt(0))


def test_velocity_is_the_transformer_called_as_flux_pipeline_calls_it() -> None:
    """FluxPipeline's own helpers as the reference: its packing, its image ids, timestep = sigma (the pipeline
    passes t / 1000 with t = 1000 sigma), guidance as a tensor, and its unpacking."""
    from diffusers import FluxPipeline

    flux = backend(guidance=4.5)
    x = torch.randn(1, 4, 6, 10, generator=torch.Generator().manual_seed(8))
    sigma = torch.tensor(0.7)
    with torch.no_grad():
        reference = flux.transformer(
            hidden_states=FluxPipeline._pack_latents(x, 1, 4, 6, 10),
            encoder_hidden_states=flux.positive.tokens,
            pooled_projections=flux.positive.pooled,
            timestep=sigma.expand(1),
            img_ids=FluxPipeline._prepare_latent_image_ids(1, 3, 5, "cpu", torch.float32),
            txt_ids=torch.zeros(12, 3),
            guidance=torch.tensor([4.5]),
        ).sample
        velocity = flux._velocity(x, sigma, flux.positive)
    torch.testing.assert_close(velocity, FluxPipeline._unpack_latents(reference, 48, 80, 8))


def flux_pipeline_velocity(flux: FluxDiffusersBackend, x: torch.Tensor, sigma: torch.Tensor, guidance) -> torch.Tensor:
    """The transformer called on an even-sided latent x with FluxPipeline's own packing, image ids and unpacking."""
    from diffusers import FluxPipeline

    b, c, h, w = x.shape
    with torch.no_grad():
        out = flux.transformer(
            hidden_states=FluxPipeline._pack_latents(x, b, c, h, w),
            encoder_hidden_states=flux.positive.tokens,
            pooled_projections=flux.positive.pooled,
            timestep=sigma.expand(b),
            img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32),
            txt_ids=torch.zeros(flux.positive.tokens.shape[1], 3),
            guidance=guidance,
        ).sample
    return FluxPipeline._unpack_latents(out, h * 8, w * 8, 8)


def test_an_odd_latent_side_is_padded_by_repeating_its_last_row_and_column() -> None:
    """A 7x9 latent: the transformer sees it with its last row, then its last column, repeated (8x10, as ComfyUI
    pads to the patch size), and the velocity is the 7x9 top-left of what it gives."""
    flux = backend(guidance=4.5)
    x = torch.randn(1, 4, 7, 9, generator=torch.Generator().manual_seed(9))
    padded = torch.cat([x, x[:, :, -1:]], dim=2)
    padded = torch.cat([padded, padded[..., -1:]], dim=3)
    sigma = torch.tensor(0.6)
    with torch.no_grad():
        velocity = flux._velocity(x, sigma, flux.positive)
    reference = flux_pipeline_velocity(flux, padded, sigma, torch.tensor([4.5]))[..., :7, :9]
    torch.testing.assert_close(velocity, reference)


def test_the_default_guidance_is_flux_pipelines() -> None:
    """A backend made without a guidance gives the model FluxPipeline's default guidance_scale (3.5)."""
    from diffusers import FluxPipeline

    default = inspect.signature(FluxPipeline.__call__).parameters["guidance_scale"].default
    flux = backend()
    x = torch.randn(1, 4, 6, 10, generator=torch.Generator().manual_seed(8))
    sigma = torch.tensor(0.7)
    with torch.no_grad():
        velocity = flux._velocity(x, sigma, flux.positive)
    torch.testing.assert_close(velocity, flux_pipeline_velocity(flux, x, sigma, torch.tensor([default])))


def test_a_model_without_guidance_embedding_is_called_without_guidance() -> None:
    """A transformer that is not guidance-distilled (FLUX.1 [schnell]-style) gets guidance None, as FluxPipeline
    passes it."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    flux = FluxDiffusersBackend(tiny_flux(guidance=False), tiny_vae(), scheduler, flux_prompt(0))
    x = torch.randn(1, 4, 6, 10, generator=torch.Generator().manual_seed(8))
    sigma = torch.tensor(0.7)
    with torch.no_grad():
        velocity = flux._velocity(x, sigma, flux.positive)
    torch.testing.assert_close(velocity, flux_pipeline_velocity(flux, x, sigma, None))


@pytest.mark.parametrize(("height", "width"), [(6, 10), (4, 4), (8, 2)])
def test_image_ids_are_flux_pipelines(height: int, width: int) -> None:
    """FluxPipeline's _prepare_latent_image_ids for the packed (height/2, width/2) grid, float ids included."""
    from diffusers import FluxPipeline

    expected = FluxPipeline._prepare_latent_image_ids(1, height // 2, width // 2, "cpu", torch.float32)
    torch.testing.assert_close(image_ids(height, width), expected, rtol=0, atol=0)


@dataclass
class SpyTransformer:
    """Stands in for a FLUX transformer held on another device in half precision: records what it is called with
    and predicts a zero velocity in its own dtype."""

    calls: list[dict] = field(default_factory=list)
    device: torch.device = torch.device("meta")
    dtype: torch.dtype = torch.float16
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(guidance_embeds=True))

    def __call__(self, **inputs) -> SimpleNamespace:
        self.calls.append(inputs)
        return SimpleNamespace(sample=torch.zeros(inputs["hidden_states"].shape, dtype=self.dtype))


def test_the_transformer_gets_every_input_on_its_device_and_the_velocity_comes_back_fp32_on_the_cpu() -> None:
    """As FluxPipeline feeds it: latent tokens, prompt, pooled vector and timestep on the model's device in its
    dtype; the ids and the guidance (float32, FluxPipeline's) on its device. The velocity comes back float32 on the
    CPU, where the sampler works."""
    spy = SpyTransformer()
    flux = FluxDiffusersBackend(spy, tiny_vae(), FlowMatchEulerDiscreteScheduler(), flux_prompt(0))
    x = torch.randn(1, 4, 6, 10, generator=torch.Generator().manual_seed(8))
    velocity = flux._velocity(x, torch.tensor(0.7), flux.positive)
    (call,) = spy.calls
    for name in ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"):
        assert (call[name].device, call[name].dtype) == (torch.device("meta"), torch.float16), name
    for name in ("img_ids", "txt_ids", "guidance"):
        assert call[name].device == torch.device("meta"), name
    assert call["guidance"].dtype == torch.float32
    assert (velocity.device, velocity.dtype, velocity.shape) == (torch.device("cpu"), torch.float32, x.shape)


def test_variations_on_flux_are_one_batch_whose_first_is_the_single_run() -> None:
    image, mask = scene()
    settings = InpaintSettings(steps=4, resolution=128, seed=1)
    single = dreammix_inpaint(backend(), image, mask, settings)
    batch = dreammix_inpaint(backend(), image, mask, replace(settings, variations=2))
    torch.testing.assert_close(batch[:1], single, atol=1e-4, rtol=0)
    inside = mask[0].bool()
    assert (batch[1][inside] - batch[0][inside]).abs().mean() > 0.01
    outside = feather_mask(mask, 32)[0] == 0
    assert all(torch.equal(result[outside], image[0][outside]) for result in batch)


FLUX_DEV_SCHEDULER = {
    "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
    "max_image_seq_len": 4096, "shift": 3.0,
}  # fmt: skip
"""FLUX.1 [dev]'s scheduler config."""


def flux_pipeline_timesteps(height: int, width: int, steps: int) -> torch.Tensor:
    """The timesteps FluxPipeline passes its transformer (t / 1000) for a (height, width) latent, from diffusers' own
    pieces: its sigmas 1 … 1/steps and its calculate_shift of the (height/2)·(width/2) packed tokens."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER)
    mu = calculate_shift((height // 2) * (width // 2), 256, 4096, 0.5, 1.15)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler.timesteps / 1000


def flux_dev_backend() -> FluxDiffusersBackend:
    scheduler = FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER)
    return FluxDiffusersBackend(tiny_flux(), tiny_vae(), scheduler, flux_prompt(0))


def recorded_timesteps(flux: FluxDiffusersBackend) -> list[tuple[int, float]]:
    """(tokens, timestep) of every transformer call from now on."""
    calls: list[tuple[int, float]] = []
    flux.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["hidden_states"].shape[1], kwargs["timestep"][0].item())),
        with_kwargs=True,
    )
    return calls


def test_dynamic_shifting_gives_the_transformer_flux_pipelines_timesteps() -> None:
    """FLUX.1 dev's resolution-dependent schedule: a whole stage on a 16x24 latent (8·12 = 96 tokens) and the last
    two steps of one on a 24x32 latent (192 tokens) call the transformer at FluxPipeline's timesteps."""
    flux = flux_dev_backend()
    calls = recorded_timesteps(flux)
    latent = torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(2))
    flux.denoise(Stage("global", latent, torch.zeros(1, 128, 192, 3), torch.ones(1, 128, 192), 0, 4, 4, seed=1))
    assert [tokens for tokens, _ in calls] == [96] * 4
    torch.testing.assert_close(torch.tensor([t for _, t in calls]), flux_pipeline_timesteps(16, 24, 4))

    calls.clear()
    latent = torch.randn(1, 4, 24, 32, generator=torch.Generator().manual_seed(3))
    flux.denoise(Stage("global", latent, torch.zeros(1, 192, 256, 3), torch.ones(1, 192, 256), 3, 5, 5, seed=1))
    assert [tokens for tokens, _ in calls] == [192] * 2
    torch.testing.assert_close(torch.tensor([t for _, t in calls]), flux_pipeline_timesteps(24, 32, 5)[3:])


def test_dynamic_shifting_in_dreammix_follows_each_stages_own_size() -> None:
    """LCG on the 128x128 crop (16x16 latent, 64 tokens) takes steps 0–3 of 6 of its schedule, GCH on the 144x208
    scene (18x26 latent, 117 tokens) steps 4–5 of its own."""
    flux = flux_dev_backend()
    calls = recorded_timesteps(flux)
    image, mask = scene(144, 208)
    dreammix_inpaint(flux, image, mask, InpaintSettings(steps=6, resolution=128, seed=1))
    assert [tokens for tokens, _ in calls] == [64] * 4 + [117] * 2
    expected = torch.cat([flux_pipeline_timesteps(16, 16, 6)[:4], flux_pipeline_timesteps(18, 26, 6)[4:]])
    torch.testing.assert_close(torch.tensor([t for _, t in calls]), expected)
