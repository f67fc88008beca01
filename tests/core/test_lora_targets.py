"""Which layers a subject LoRA adapts, and the fused FLUX layers held to their attention parts (lora_targets).

The layer names and shapes are ComfyUI's FLUX.1 / FLUX.2 ones (comfy/ldm/flux/layers.py), Qwen-Image's
(comfy/ldm/qwen_image/model.py), Z-Image's (comfy/ldm/lumina/model.py) and its UNet's, written out by hand with a
hidden size of 8 and an MLP of 32; the expected parts are read off those layouts: q, k, v are the thirds of FLUX's
first 3·8 rows, `linear2` reads the attention output in its first 8 columns, and Z-Image's `attention.qkv` with 4
query heads and 2 key-value heads of 2 holds q in rows 0-8, k in 8-12 and v in 12-16.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_qwen_image, tiny_z_image

from dreammix_core.training.data import MixSampler
from dreammix_core.training.loop import Example, LoopSettings, train
from dreammix_core.training.lora_targets import KV_OUT, PROJECTION_TARGETS, QKV_OUT, Part, adapted_part, restrict
from dreammix_core.training.loss import flow_velocity

HIDDEN, MLP = 8, 32
LAYERS = {  # name: (shape, part for k/v/out, part for q/k/v/out)
    "diffusion_model.double_blocks.0.img_attn.qkv": ((3 * HIDDEN, HIDDEN), Part(rows=(8, 24)), Part(rows=(0, 24))),
    "diffusion_model.double_blocks.4.txt_attn.qkv": ((3 * HIDDEN, HIDDEN), Part(rows=(8, 24)), Part(rows=(0, 24))),
    "diffusion_model.double_blocks.0.img_attn.proj": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.double_blocks.0.txt_attn.proj": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.single_blocks.2.linear1": ((3 * HIDDEN + MLP, HIDDEN), Part(rows=(8, 24)), Part(rows=(0, 24))),
    "diffusion_model.single_blocks.2.linear2": ((HIDDEN, HIDDEN + MLP), Part(columns=(0, 8)), Part(columns=(0, 8))),
    "diffusion_model.double_blocks.0.img_mlp.0": ((MLP, HIDDEN), None, None),
    "diffusion_model.double_blocks.0.img_mod.lin": ((6 * HIDDEN, HIDDEN), None, None),
    "diffusion_model.single_blocks.2.modulation.lin": ((3 * HIDDEN, HIDDEN), None, None),
    "diffusion_model.txt_in": ((HIDDEN, 768), None, None),
    "diffusion_model.joint_blocks.0.x_block.attn.qkv": ((3 * HIDDEN, HIDDEN), None, None),  # SD3: not this trainer's
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q": ((HIDDEN, HIDDEN), None, Part()),
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_k": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_v": ((HIDDEN, 768), Part(), Part()),
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_out.0": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj": ((MLP, HIDDEN), None, None),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0": ((HIDDEN, HIDDEN), Part(), Part()),  # diffusers
    # Qwen-Image: image stream to_*, text stream add_*_proj / to_add_out
    "diffusion_model.transformer_blocks.0.attn.to_q": ((HIDDEN, HIDDEN), None, Part()),
    "diffusion_model.transformer_blocks.0.attn.to_k": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.transformer_blocks.0.attn.to_v": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.transformer_blocks.0.attn.to_out.0": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.transformer_blocks.0.attn.add_q_proj": ((HIDDEN, HIDDEN), None, Part()),
    "diffusion_model.transformer_blocks.0.attn.add_k_proj": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.transformer_blocks.0.attn.add_v_proj": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.transformer_blocks.0.attn.to_add_out": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.transformer_blocks.0.img_mlp.net.0.proj": ((MLP, HIDDEN), None, None),
    "diffusion_model.transformer_blocks.0.txt_mod.1": ((6 * HIDDEN, HIDDEN), None, None),
    # Z-Image: grouped heads fused in attention.qkv, in the main layers and both refiners
    "diffusion_model.layers.0.attention.qkv": ((16, HIDDEN), Part(rows=(8, 16)), Part(rows=(0, 16))),
    "diffusion_model.noise_refiner.1.attention.qkv": ((16, HIDDEN), Part(rows=(8, 16)), Part(rows=(0, 16))),
    "diffusion_model.context_refiner.0.attention.out": ((HIDDEN, HIDDEN), Part(), Part()),
    "diffusion_model.layers.0.feed_forward.w1": ((MLP, HIDDEN), None, None),
    "diffusion_model.layers.0.adaLN_modulation.0": ((4 * HIDDEN, HIDDEN), None, None),
    "diffusion_model.cap_embedder.1": ((HIDDEN, 768), None, None),
}


@pytest.mark.parametrize("name", LAYERS)
def test_adapted_parts_by_hand(name: str) -> None:
    shape, kv_out, qkv_out = LAYERS[name]
    assert adapted_part(name, shape, KV_OUT) == kv_out
    assert adapted_part(name, shape, QKV_OUT) == qkv_out


def test_an_unknown_recipe_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown LoRA recipe 'attention k'"):
        adapted_part("double_blocks.0.img_attn.qkv", (24, 8), "attention k")


def test_restricted_loras_leave_the_query_and_the_mlp_untouched_after_adamw() -> None:
    """A FLUX single block's two fused layers with restricted LoRAs, trained by the loop (AdamW with weight decay)
    towards a random target: the up rows of q and of the MLP input, and linear2's down columns of the MLP, are zero
    after training; the k, v rows and the attention columns did train; the block's query and MLP input are the base
    layer's bit for bit."""
    generator = torch.Generator().manual_seed(0)
    w1 = torch.randn(3 * HIDDEN + MLP, HIDDEN, generator=generator)
    w2 = torch.randn(HIDDEN, HIDDEN + MLP, generator=generator)
    loras = {}
    for name, weight in (("linear1", w1), ("linear2", w2)):
        up = torch.nn.Parameter(torch.zeros(weight.shape[0], 2))
        down = torch.nn.Parameter(torch.randn(2, weight.shape[1], generator=generator))
        restrict(up, down, adapted_part(f"single_blocks.0.{name}", tuple(weight.shape), KV_OUT))
        loras[name] = (up, down)
    x = torch.randn(5, HIDDEN, generator=generator)
    target = torch.randn(5, HIDDEN, generator=generator)

    def adapted(weight: torch.Tensor, name: str) -> torch.Tensor:
        up, down = loras[name]
        return weight + up @ down

    def predict(index: int, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = x @ adapted(w1, "linear1").T
        attention = hidden[:, :HIDDEN] * hidden[:, HIDDEN : 2 * HIDDEN] + hidden[:, 2 * HIDDEN : 3 * HIDDEN]
        out = torch.cat([attention, hidden[:, 3 * HIDDEN :]], dim=1)
        return (out @ adapted(w2, "linear2").T)[None, None], target[None, None]

    params = {f"{name}.{kind}": p for name, pair in loras.items() for kind, p in zip(("up", "down"), pair)}
    settings = LoopSettings(steps=5, learning_rate=1e-2, weight_decay=0.1, grad_accumulation=1, checkpoint_every=0)
    train(params, [Example((1, 5, HIDDEN), torch.ones(1, 5, HIDDEN))], MixSampler(1, 0), predict, settings)

    up1, down1 = loras["linear1"]
    up2, down2 = loras["linear2"]
    assert torch.count_nonzero(up1[:HIDDEN]) == 0 and torch.count_nonzero(up1[3 * HIDDEN :]) == 0
    assert torch.count_nonzero(down2[:, HIDDEN:]) == 0
    assert torch.count_nonzero(up1[HIDDEN : 3 * HIDDEN]) == 2 * HIDDEN * 2
    assert torch.count_nonzero(up2) == HIDDEN * 2 and torch.count_nonzero(down2[:, :HIDDEN]) == 2 * HIDDEN
    with torch.no_grad():
        new_w1 = adapted(w1, "linear1")
    assert torch.equal(new_w1[:HIDDEN], w1[:HIDDEN]) and torch.equal(new_w1[3 * HIDDEN :], w1[3 * HIDDEN :])
    assert not torch.equal(new_w1[HIDDEN : 3 * HIDDEN], w1[HIDDEN : 3 * HIDDEN])


def test_restrict_zeroes_and_masks_exactly_the_entries_outside_the_part() -> None:
    """Rank 3, rows [2, 5) of 6 and columns [0, 2) of 4: entries inside keep their values and their full gradient
    (d/dx of sum(x · weights) is the weights), entries outside become zero and get a zero gradient."""
    generator = torch.Generator().manual_seed(2)
    up_init, down_init = torch.randn(6, 3, generator=generator), torch.randn(3, 4, generator=generator)
    up, down = torch.nn.Parameter(up_init.clone()), torch.nn.Parameter(down_init.clone())
    restrict(up, down, Part(rows=(2, 5), columns=(0, 2)))
    rows, columns = torch.zeros(6, 1), torch.zeros(1, 4)
    rows[2:5], columns[:, :2] = 1, 1
    assert torch.equal(up.detach(), up_init * rows) and torch.equal(down.detach(), down_init * columns)
    up_weights, down_weights = torch.randn(6, 3, generator=generator), torch.randn(3, 4, generator=generator)
    ((up * up_weights).sum() + (down * down_weights).sum()).backward()
    assert torch.equal(up.grad, up_weights * rows) and torch.equal(down.grad, down_weights * columns)


def test_a_whole_layer_is_not_restricted() -> None:
    up, down = torch.nn.Parameter(torch.ones(4, 2)), torch.nn.Parameter(torch.ones(2, 3))
    restrict(up, down, Part())
    (up @ down).sum().backward()
    assert torch.equal(up, torch.ones(4, 2)) and torch.equal(up.grad, torch.full((4, 2), 3.0))
    assert torch.equal(down.grad, torch.full((2, 3), 4.0))


def test_flow_velocity_is_the_noisy_latents_derivative_in_sigma() -> None:
    """x_sigma = sigma·noise + (1 - sigma)·x0 (ComfyUI's CONST noise scaling, diffusers' flow-matching scale_noise),
    differentiated by central differences."""
    generator = torch.Generator().manual_seed(1)
    noise, latent = torch.randn(2, 3, generator=generator, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)

    def noisy(sigma: float) -> torch.Tensor:
        return sigma * noise + (1 - sigma) * latent

    derivative = (noisy(0.4 + 1e-4) - noisy(0.4 - 1e-4)) / 2e-4
    torch.testing.assert_close(flow_velocity(noise, latent), derivative, rtol=1e-8, atol=1e-8)


DIFFUSERS_DITS = {  # the DreamMix recipe's layers in diffusers' one-block models, by hand
    "Qwen-Image": (
        tiny_qwen_image,
        {f"transformer_blocks.0.attn.{name}" for name in ("to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj",
                                                          "to_add_out")},
    ),
    "Z-Image": (
        tiny_z_image,
        {f"{block}.attention.{name}" for block in ("layers.0", "noise_refiner.0", "context_refiner.0")
         for name in ("to_k", "to_v", "to_out.0")},
    ),
}  # fmt: skip


@pytest.mark.parametrize("family", DIFFUSERS_DITS)
def test_the_recipe_on_diffusers_dits_and_through_peft(family: str) -> None:
    """diffusers' Qwen-Image and Z-Image DiTs keep each projection its own layer: the DreamMix recipe adapts the
    whole key, value and output layers of every attention (both streams of Qwen-Image's), nothing else, and peft
    given the recipe's pattern (as the diffusers host gives it) puts its LoRA on exactly those layers."""
    from peft import LoraConfig, inject_adapter_in_model

    build, expected = DIFFUSERS_DITS[family]
    model = build()
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    parts = {name: adapted_part(name, tuple(module.weight.shape), KV_OUT) for name, module in linears.items()}
    assert {name for name, part in parts.items() if part is not None} == expected
    assert {parts[name] for name in expected} == {Part()}
    inject_adapter_in_model(LoraConfig(r=2, target_modules=".*" + PROJECTION_TARGETS[KV_OUT]), model)
    assert {name.removesuffix(".lora_A") for name, _ in model.named_modules() if name.endswith(".lora_A")} == expected
