"""Tiny random-weight diffusers models shaped like SDXL (inpainting or not), Qwen-Image and Z-Image, built in code."""

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    QwenImageTransformer2DModel,
    UNet2DConditionModel,
    ZImageTransformer2DModel,
)

from dreammix_core.inpainting.diffusers_backend import DiffusersBackend, PromptEmbeddings

TEXT_DIM = 64
POOLED_DIM = 32
FLOW_CHANNELS = 4
"""Latent channels of the tiny Qwen-Image and Z-Image DiTs (tiny_vae's)."""


def tiny_sdxl_unet(in_channels: int) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + POOLED_DIM,
        cross_attention_dim=TEXT_DIM,
        norm_num_groups=8,
    ).eval()


def tiny_qwen_image() -> QwenImageTransformer2DModel:
    """One Qwen-Image MMDiT block on 2x2 patches of FLOW_CHANNELS latents, a 16-wide prompt."""
    torch.manual_seed(3)
    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * FLOW_CHANNELS, out_channels=FLOW_CHANNELS, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(2, 2, 4),
    ).eval()  # fmt: skip


def tiny_z_image() -> ZImageTransformer2DModel:
    """One Z-Image layer and one refiner of each kind on FLOW_CHANNELS latents, a 32-wide prompt."""
    torch.manual_seed(3)
    return ZImageTransformer2DModel(
        in_channels=FLOW_CHANNELS, dim=64, n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=32,
        axes_dims=[8, 12, 12], axes_lens=[64, 32, 32],
    ).eval()  # fmt: skip


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(1)
    return AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
    ).eval()


def tiny_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )


def prompt(seed: int) -> PromptEmbeddings:
    generator = torch.Generator().manual_seed(seed)
    return PromptEmbeddings(
        torch.randn(1, 77, TEXT_DIM, generator=generator), torch.randn(1, POOLED_DIM, generator=generator)
    )


def tiny_backend(inpainting: bool = True, guidance_scale: float = 4.0) -> DiffusersBackend:
    return DiffusersBackend(
        tiny_sdxl_unet(9 if inpainting else 4), tiny_vae(), tiny_scheduler(), prompt(0), prompt(1), guidance_scale
    )


def tiny_sd_pipeline(in_channels: int = 4):
    """A StableDiffusionPipeline of tiny random parts: a 2-layer CLIP text encoder (width 32, 16 positions) on the
    word-level tokenizer of the metric tests, an SD1-style UNet (no size conditioning), the tiny VAE."""
    from diffusers import StableDiffusionPipeline
    from tiny_metric_models import tiny_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    tokenizer.model_max_length = 16
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(config).eval()
    torch.manual_seed(3)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), cross_attention_dim=32, norm_num_groups=8,
    ).eval()  # fmt: skip
    return StableDiffusionPipeline(
        vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=tiny_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


def assert_dreammix_keeps_the_background_exact(backend, steps: int = 4) -> None:
    """DreamMix on a seeded 200x136 scene with a 50x50 mask near its right edge: the result has the scene's shape,
    its pixels beyond mask + the default 32-pixel feather are the scene's exactly, and the mask was generated."""
    from dreammix_core import InpaintSettings, dreammix_inpaint

    image = torch.rand(1, 136, 200, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, 136, 200)
    mask[:, 40:90, 120:170] = 1
    result = dreammix_inpaint(backend, image, mask, InpaintSettings(steps=steps, resolution=128, seed=1))
    assert result.shape == image.shape
    far = torch.ones_like(mask, dtype=torch.bool)
    far[:, 40 - 32 : 90 + 32, 120 - 32 : 170 + 32] = False
    assert torch.equal(result[far], image[far])
    assert not torch.equal(result[mask.bool()], image[mask.bool()])
