"""What the diffusers backend feeds the model at each step, against values computed here by hand.

A spy stands in for the UNet: it records every call and predicts a known noise (0 for the negative
half, `COND_EPS` for the positive half), so the Euler step, the guidance, the blending of the known
region and the inpainting model's extra channels can be checked against small independent formulas.
"""

from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import pytest
import torch
from tiny_models import prompt, tiny_scheduler, tiny_sd_pipeline, tiny_vae

from dreammix_core.inpainting.diffusers_backend import DiffusersBackend
from dreammix_core.inpainting.pipeline import Stage

COND_EPS = 0.25
GUIDANCE = 3.0


@dataclass
class SpyUNet:
    in_channels: int
    calls: list[dict] = field(default_factory=list)
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")

    @property
    def config(self) -> SimpleNamespace:
        return SimpleNamespace(in_channels=self.in_channels, addition_embed_type="text_time")

    def __call__(self, sample, t, encoder_hidden_states, added_cond_kwargs):
        self.calls.append({"sample": sample.clone(), "t": t, "tokens": encoder_hidden_states, **added_cond_kwargs})
        eps = torch.zeros(sample.shape[0], 4, *sample.shape[2:])
        eps[1] = COND_EPS
        return SimpleNamespace(sample=eps)


def backend(in_channels: int = 4, local_prompt: bool = False) -> tuple[DiffusersBackend, SpyUNet]:
    unet = SpyUNet(in_channels)
    local = prompt(2) if local_prompt else None
    return DiffusersBackend(unet, tiny_vae(), tiny_scheduler(), prompt(0), prompt(1), GUIDANCE, local), unet


def sigmas(steps: int) -> torch.Tensor:
    """Euler's sigmas for the tiny scheduler's leading spacing: sqrt((1 - ᾱ) / ᾱ) at t = 1000/steps·i + 1."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    timesteps = [(1000 // steps) * i + 1 for i in reversed(range(steps))]
    return torch.tensor([((1 - alphas_cumprod[t]) / alphas_cumprod[t]) ** 0.5 for t in timesteps] + [0.0])


def stage(name: str, start: int, end: int, steps: int = 6, height: int = 64, width: int = 96) -> Stage:
    generator = torch.Generator().manual_seed(11)
    pixels = torch.rand(1, height, width, 3, generator=generator)
    mask = torch.zeros(1, height, width)
    mask[:, 16:40, 24:57] = 1  # 57 is inside latent column 7: a partly masked cell counts as masked
    latent = torch.randn(1, 4, height // 8, width // 8, generator=generator)
    return Stage(name, latent, pixels, mask, start, end, steps, seed=5)


def latent_mask(mask: torch.Tensor) -> torch.Tensor:
    cells = torch.zeros(1, 1, mask.shape[1] // 8, mask.shape[2] // 8)
    for row in range(cells.shape[2]):
        for col in range(cells.shape[3]):
            cells[0, 0, row, col] = float(mask[0, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8].any())
    return cells


def test_known_region_is_the_noised_original_at_every_step() -> None:
    """Outside the mask the model sees the original latent noised to each step's sigma, from the stage's seed."""
    dm, unet = backend()
    st = stage("global", 2, 6)
    dm.denoise(st)
    noise = torch.randn(st.latent.shape, generator=torch.Generator().manual_seed(st.seed))
    keep = latent_mask(st.mask)
    assert len(unet.calls) == 4
    for index, call in zip(range(2, 6), unet.calls):
        sigma = sigmas(6)[index].item()
        unscaled = call["sample"][1:2] * (sigma**2 + 1) ** 0.5
        expected = st.latent + sigma * noise
        outside = (keep == 0).expand_as(expected)
        assert torch.allclose(unscaled[outside], expected[outside], atol=1e-4), index
    first = unet.calls[0]["sample"][1:2] * (sigmas(6)[2].item() ** 2 + 1) ** 0.5
    inside = (keep == 1).expand_as(first)
    assert torch.allclose(first[inside], (st.latent + sigmas(6)[2].item() * noise)[inside], atol=1e-4)


def test_euler_step_with_guidance_inside_and_the_original_outside() -> None:
    """One step from sigma_k: x0 = x − sigma·(uncond + g·(cond − uncond)) inside; exactly the original outside."""
    dm, unet = backend()
    st = stage("global", 5, 6)
    result = dm.denoise(st)
    sigma = sigmas(6)[5].item()
    x = unet.calls[0]["sample"][1:2] * (sigma**2 + 1) ** 0.5
    keep = latent_mask(st.mask).expand_as(x).bool()
    guided = GUIDANCE * COND_EPS
    assert torch.allclose(result.denoised[keep], (x - sigma * guided)[keep], atol=1e-4)
    assert torch.allclose(result.latent[keep], (x - sigma * guided)[keep], atol=1e-4)  # last step: sigma_next = 0
    assert torch.equal(result.denoised[~keep], st.latent[~keep])
    assert torch.equal(result.latent[~keep], st.latent[~keep])


def test_negative_then_positive_and_the_local_prompt_only_in_the_local_stage() -> None:
    dm, unet = backend(local_prompt=True)
    dm.denoise(stage("local", 0, 1))
    dm.denoise(stage("global", 1, 2))
    local, harmonise = unet.calls
    assert torch.equal(local["tokens"], torch.cat([prompt(1).tokens, prompt(2).tokens]))
    assert torch.equal(local["text_embeds"], torch.cat([prompt(1).pooled, prompt(2).pooled]))
    assert torch.equal(harmonise["tokens"], torch.cat([prompt(1).tokens, prompt(0).tokens]))
    assert torch.equal(harmonise["text_embeds"], torch.cat([prompt(1).pooled, prompt(0).pooled]))


@pytest.mark.parametrize(("height", "width"), [(64, 96), (128, 64)])
def test_size_conditioning_is_each_stage_own_image_size(height: int, width: int) -> None:
    dm, unet = backend()
    dm.denoise(stage("local", 0, 1, height=height, width=width))
    expected = torch.tensor([[height, width, 0, 0, height, width]] * 2, dtype=torch.float32)
    assert torch.equal(unet.calls[0]["time_ids"], expected)


def test_inpainting_model_gets_the_mask_and_the_grey_masked_image() -> None:
    """Channels 4 (the latent mask) and 5–8 (the image with the masked pixels set to grey 0.5, encoded)."""
    dm, unet = backend(in_channels=9)
    st = stage("local", 0, 2)
    dm.denoise(st)
    grey = st.pixels.clone()
    grey[st.mask.bool()] = 0.5
    vae = dm.vae
    with torch.no_grad():
        encoded = vae.encode(grey.movedim(-1, 1) * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
    for call in unet.calls:
        sample = call["sample"]
        assert sample.shape[1] == 9
        for half in sample.chunk(2):
            assert torch.equal(half[:, 4:5], latent_mask(st.mask))
            assert torch.allclose(half[:, 5:], encoded, atol=1e-5)


def test_every_input_reaches_the_unet_on_its_device_in_its_dtype() -> None:
    """A UNet held on another device in half precision: the latent, the prompt tokens, the pooled vectors and the
    size conditioning all reach it there, in its dtype (as StableDiffusionXLPipeline passes them: its time ids in
    the prompt's dtype)."""
    unet = SpyUNet(4, dtype=torch.float16, device=torch.device("meta"))
    dm = DiffusersBackend(unet, tiny_vae(), tiny_scheduler(), prompt(0), prompt(1), GUIDANCE)
    dm.denoise(stage("global", 4, 6))
    assert len(unet.calls) == 2
    for call in unet.calls:
        for name in ("sample", "tokens", "text_embeds", "time_ids"):
            assert (call[name].device, call[name].dtype) == (torch.device("meta"), torch.float16), name


def test_a_float64_mask_gives_the_float32_masks_result() -> None:
    """A stage mask in float64 (torch.from_numpy of a NumPy mask) gives exactly the float32 mask's result, dtype
    included."""
    st = stage("global", 3, 6)
    as_float32 = backend()[0].denoise(st)
    as_float64 = backend()[0].denoise(replace(st, mask=st.mask.to(torch.float64)))
    torch.testing.assert_close(as_float64.latent, as_float32.latent, rtol=0, atol=0)
    torch.testing.assert_close(as_float64.denoised, as_float32.denoised, rtol=0, atol=0)


def test_the_default_guidance_is_the_released_codes_4() -> None:
    """Without a guidance scale, one step gives x0 = x − sigma·4·(cond − uncond) inside the mask (the released
    DreamMix code's guidance 4)."""
    unet = SpyUNet(4)
    dm = DiffusersBackend(unet, tiny_vae(), tiny_scheduler(), prompt(0), prompt(1))
    st = stage("global", 5, 6)
    result = dm.denoise(st)
    sigma = sigmas(6)[5].item()
    x = unet.calls[0]["sample"][1:2] * (sigma**2 + 1) ** 0.5
    keep = latent_mask(st.mask).expand_as(x).bool()
    assert torch.allclose(result.denoised[keep], (x - sigma * 4.0 * COND_EPS)[keep], atol=1e-4)


def test_from_pipeline_defaults_to_an_empty_negative_prompt_and_guidance_4() -> None:
    """The README's `from_pipeline(pipe, prompt)`: the negative is the pipeline's own encoding of "" (diffusers'
    encode_prompt called here), the guidance the released code's 4."""
    pipe = tiny_sd_pipeline()
    dm = DiffusersBackend.from_pipeline(pipe, "a photo of a red backpack")
    with torch.no_grad():
        empty = pipe.encode_prompt("", "cpu", 1, False)[0]
        positive = pipe.encode_prompt("a photo of a red backpack", "cpu", 1, False)[0]
    assert torch.equal(dm.negative.tokens, empty) and dm.negative.pooled is None
    assert torch.equal(dm.positive.tokens, positive) and not torch.equal(positive, empty)
    assert dm.guidance_scale == 4.0
