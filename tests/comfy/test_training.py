"""ComfyUI tier: subject LoRA training (method.md §4) on the tiny checkpoints, one probe process per family.

The probe (training_probe.py, run under COMFYUI_PYTHON) trains at 64 px for a few steps on CPU and
reports: the loss curve of an over-fitting run, the round trip through ComfyUI's LoraLoaderModelOnly,
a cancelled-then-resumed run against an uninterrupted one, the regular-data node's reuse, inpainting-
mode training on the 9-channel checkpoint, gradient checkpointing and bf16/fp16 autocast, how a LoRA
trained without ComfyUI (dreammix_core.training.diffusers_training, in this process) loads, and every
"lora key not loaded" / "NOT LOADED" warning. The SDXL probe trains and round-trips the tiny SDXL model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from probe import run_probe
from test_flux import NOT_TINY

PROBE = Path(__file__).with_name("training_probe.py")
LORA_TENSORS = ("lora_up.weight", "lora_down.weight", "alpha")


# What each module of the core-trained LoRA must patch in tiny_sd15, mapped by hand: the one transformer sits in the
# first down block (diffusers down_blocks.0.attentions.0 is ComfyUI's input_blocks.1.1).
CORE_TARGETS = {
    f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_{attention}_{name}": (
        f"diffusion_model.input_blocks.1.1.transformer_blocks.0.{attention}.{projection}.weight"
    )
    for attention in ("attn1", "attn2")
    for name, projection in (("to_k", "to_k"), ("to_v", "to_v"), ("to_out_0", "to_out.0"))
}


def write_core_trained_lora(loras: Path) -> None:
    """Train with dreammix_core.training.diffusers_training, no ComfyUI: a diffusers UNet with tiny_sd15's attention
    layout (320 channels, 768-wide context, a transformer in the first down block only) and stand-in VAE and prompts."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from dreammix_core.training.diffusers_training import DiffusersTrainingHost
    from dreammix_core.training.loop import LoopSettings
    from dreammix_core.training.subject_lora import LoraRecipe, train_subject_lora

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(320, 640), layers_per_block=1, mid_block_type=None,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(8,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8,
    )  # fmt: skip
    tokens = torch.randn(1, 77, 768)
    pipe = SimpleNamespace(
        unet=unet, vae=vae, scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        encode_prompt=lambda *args, **kwargs: (tokens, None),
    )  # fmt: skip
    image, mask = torch.rand(64, 64, 3), torch.zeros(64, 64)
    mask[16:48, 16:48] = 1
    settings = LoopSettings(steps=2, grad_accumulation=1, learning_rate=1e-2, checkpoint_every=0)
    recipe = LoraRecipe(resolution=64, subject_copies=1)
    host = DiffusersTrainingHost(pipe)
    train_subject_lora(host, [image], [mask], "a photo of a sks box", str(loras / "core.safetensors"), settings, recipe)
    (loras / "core.json").write_text(json.dumps(CORE_TARGETS))


def probe(comfy_install, checkpoints, tmp_path_factory, family: str, *extra: str) -> dict:
    root = tmp_path_factory.mktemp(f"training-{family}")
    work = root / "work"
    (work / "loras").mkdir(parents=True)
    if family == "sd15":
        write_core_trained_lora(work / "loras")
    args = [str(checkpoints.directory), str(work), family, *extra]
    data = run_probe(comfy_install, PROBE, "TRAINING_PROBE", args, root, timeout=1800)
    print("TRAINING", family, json.dumps(data))
    return data


@pytest.fixture(scope="module")
def report(comfy_install, checkpoints, tmp_path_factory) -> dict:
    return probe(comfy_install, checkpoints, tmp_path_factory, "sd15")


def test_loss_falls_when_overfitting(report) -> None:
    losses = report["losses"]
    print("loss curve", losses)
    assert len(losses) == 40
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])
    assert report["curve_shape"][0] == 1 and report["curve_shape"][-1] == 3


def test_base_weights_are_frozen_ordinary_tensors(report) -> None:
    """Loaded under inference mode like CheckpointLoaderSimple; training leaves no inference tensor nor gradient."""
    assert report["base_weights_inference"] == 0
    assert report["base_weights_requiring_grad"] == 0 and report["base_weights_with_grad"] == 0


def test_saved_lora_round_trips_through_lora_loader(report) -> None:
    print("round trip max diff", report["roundtrip_max_diff"], "trained vs base", report["trained_vs_base_max_diff"])
    assert report["roundtrip_max_diff"] < 1e-4
    assert report["trained_vs_base_max_diff"] > 100 * max(report["roundtrip_max_diff"], 1e-7)
    assert all(key.startswith("lora_unet_") for key in report["lora_keys"])


def test_cancelled_and_resumed_equals_uninterrupted(report) -> None:
    print("resume max diff", report["resume_max_diff"], "checkpoints", report["checkpoints_after_cancel"])
    assert report["interrupted"]
    # checkpoints every 2 steps up to the step the cancel came after (ComfyUI throttles progress, see the probe)
    assert 3 <= report["interrupt_step"] < 10
    expected = [f"step_{step:06d}.state" for step in range(2, report["interrupt_step"] + 1, 2)]
    assert report["checkpoints_after_cancel"] == expected
    assert not report["lora_after_cancel"]
    assert report["resume_same_keys"] and report["resume_max_diff"] == 0.0


def test_identical_crops_are_encoded_once(report) -> None:
    """10 copies of each of the 4 photos: the two square ones give one crop each, the others a few offsets."""
    print("encode logs", report["encode_logs"][:3])
    pattern = re.compile(r"DreamMix: 40 training copies from (\d+) distinct VAE encodes")
    ordinary_model_run = next(match for line in report["encode_logs"] if (match := pattern.fullmatch(line)))
    assert 4 <= int(ordinary_model_run.group(1)) < 40


def test_existing_lora_is_never_overwritten(report) -> None:
    assert report["overwrite_refused"]


def test_regular_data_is_reused(report) -> None:
    print("regular data seconds (first, rerun)", report["regular_seconds"])
    assert report["regular_files"] == 2 * (1 + 2 * 2)  # per prompt: prompt.txt + 2 images + 2 masks
    assert report["regular_files_after_rerun"] == 2 * (1 + 3 * 2)
    assert report["regular_reused_unchanged"] and report["regular_reused_equal"]
    assert report["regular_preview_shapes"] == [[4, 64, 64, 3], [6, 64, 64, 3], [4, 64, 64]]
    assert report["adm_lora"] == "adm.safetensors"


def test_refusals_before_any_generation_or_step(report) -> None:
    """No text encoder for Regular Data or the trainer, a mask of no MASK shape, an SD3 model: each refused with its
    message, and no file written for any."""
    assert report["refusals"] == {
        "regular_data_without_clip": "DreamMixInputError: No CLIP is connected: regular images need the base model's "
        "text encoder.",
        "training_without_clip": "DreamMixInputError: No CLIP is connected: the prompts need the model's text encoder.",
        "mask_of_no_mask_shape": "DreamMixInputError: Unexpected mask shape (8,).",
        "sd3_model": "DreamMixInputError: This model has no attention projections this trainer can adapt "
        "(SD1.5/SD2/SDXL UNets, FLUX.1, FLUX.2, Qwen-Image and Z-Image DiTs).",
    }
    assert report["refusals_left_no_file"]


def test_inpainting_model_trains(report) -> None:
    assert report["inpaint_lora"] == "inpaint.safetensors"


def test_no_key_not_loaded_warnings(report) -> None:
    assert report["key_warnings"] == []


def test_a_lora_trained_without_comfyui_loads_into_what_it_trained(report) -> None:
    """The diffusers-trained file: LoraLoaderModelOnly patches exactly the hand-mapped weights, warns of no key, and
    gives W + alpha/rank·up@down (applied by hand to the base weights)."""
    print("core LoRA: change", report["core_change"], "loaded vs by hand", report["core_vs_by_hand"])
    assert report["core_key_warnings"] == []
    assert report["core_patched"] == sorted(CORE_TARGETS.values())
    assert report["core_change"] > 1e-3
    assert report["core_vs_by_hand"] < 1e-3 * report["core_change"]


def test_gradient_checkpointing_recomputes_and_keeps_the_result(report) -> None:
    """Every attention layer runs again in the backward pass, and the trained LoRA is the same."""
    print("attention calls (plain, checkpointed)", report["attention_calls"])
    print("checkpointing max diff", report["checkpointing_max_diff"])
    plain, recomputed = report["attention_calls"]
    assert plain > 0 and recomputed == 2 * plain
    assert report["checkpointing_max_diff"] < 1e-6
    assert report["checkpointing_losses"][0] == pytest.approx(report["checkpointing_losses"][1], rel=1e-5)


def test_autocast_dtypes_train_to_close_losses(report) -> None:
    """bf16 / fp16 autocast change the arithmetic (losses differ from fp32) but stay within 2 %."""
    losses = report["autocast_losses"]
    print("autocast losses", losses)
    for dtype in ("bf16", "fp16"):
        assert losses[dtype] != losses["fp32"], f"{dtype} autocast had no effect"
        assert losses[dtype] == pytest.approx(losses["fp32"], rel=0.02)


# --- FLUX.1, FLUX.1 Fill, FLUX.2 (tiny DiTs of make_flux_models.py) ----------------------------

FLUX_LAYERS = ("double_blocks_0_img_attn_qkv", "double_blocks_0_img_attn_proj", "double_blocks_0_txt_attn_qkv",
               "double_blocks_0_txt_attn_proj", "single_blocks_0_linear1", "single_blocks_0_linear2")  # fmt: skip
"""The attention projections of the tiny DiTs' one double and one single block, in kohya's FLUX names."""


@pytest.fixture(scope="module")
def flux_report(comfy_install, checkpoints, flux_folder, tmp_path_factory) -> dict:
    return probe(comfy_install, checkpoints, tmp_path_factory, "flux", str(flux_folder))


def flux_entry(flux_report: dict, unet: str) -> dict:
    if unet not in flux_report:
        pytest.skip(NOT_TINY.format(unet=unet))
    return flux_report[unet]


@pytest.mark.parametrize("unet", ["tiny_flux1", "tiny_flux1_fill", "tiny_flux2"])
def test_flux_lora_is_saved_under_kohya_flux_keys_and_round_trips(flux_report: dict, unet: str) -> None:
    """The trained MODEL and the saved file loaded by LoraLoaderModelOnly give the same prediction, and the LoRA
    changed it; every key is one LoraLoaderModelOnly maps (no "lora key not loaded")."""
    entry = flux_entry(flux_report, unet)
    print(unet, "round trip", entry["roundtrip_max_diff"], "vs base", entry["trained_vs_base_max_diff"])
    expected = {f"lora_unet_{layer}.{kind}" for layer in FLUX_LAYERS for kind in LORA_TENSORS}
    assert set(entry["lora_keys"]) == expected
    assert entry["roundtrip_max_diff"] == 0.0
    assert entry["trained_vs_base_max_diff"] > 1e-4
    assert flux_report["key_warnings"] == []


@pytest.mark.parametrize("unet", ["tiny_flux1", "tiny_flux1_fill", "tiny_flux2"])
def test_flux_fused_layers_train_only_key_value_and_attention_out(flux_report: dict, unet: str) -> None:
    """The DreamMix recipe (k, v, out) on fused layers: q rows and the MLP's rows / columns of the up and down
    matrices stay exactly zero, k and v rows and the attention columns trained (rank 4, hidden 128)."""
    entry = flux_entry(flux_report, unet)
    hidden, rank = entry["hidden"], 4
    assert entry["nonzero"] == {
        "qkv_up_q": 0,
        "qkv_up_kv": 2 * hidden * rank,
        "txt_qkv_up_q": 0,
        "linear1_up_q": 0,
        "linear1_up_kv": 2 * hidden * rank,
        "linear1_up_mlp": 0,
        "linear2_down_attention": rank * hidden,
        "linear2_down_mlp": 0,
    }


@pytest.mark.parametrize("unet", ["tiny_flux1", "tiny_flux1_fill", "tiny_flux2"])
def test_flux_regular_data_and_resume(flux_report: dict, unet: str) -> None:
    """Regular data generated with the DiT comes out at the asked size (FLUX.2's latent cell is 16 pixels, FLUX.1's
    8); a run resumed from its step-2 checkpoint writes the LoRA the uninterrupted run wrote, bit for bit."""
    entry = flux_entry(flux_report, unet)
    assert entry["regular_images_shape"] == [1, 64, 64, 3]
    assert entry["resume_same_keys"] and entry["resume_max_diff"] == 0.0


def test_flux_fill_trains_with_the_mask_and_the_masked_image(flux_report: dict) -> None:
    """FLUX.1 Fill's 64 mask channels carried the training copy's mask (0 and 1), not the no-mask default of ones."""
    assert flux_entry(flux_report, "tiny_flux1_fill")["fill_masks_seen"] == [[0.0, 1.0]]


@pytest.mark.parametrize("unet", ["tiny_flux1", "tiny_flux1_fill", "tiny_flux2"])
def test_flux_trains_toward_the_velocity(flux_report: dict, unet: str) -> None:
    """On a flow model the trainer's target is the velocity noise − x0 (not the noise SD trains toward), and its
    prediction is the DiT's own output, at the schedule's ends and middle (differences of float rounding only; the
    prediction's times σ, as it divides by σ)."""
    entry = flux_entry(flux_report, unet)
    print(unet, "target - velocity", entry["target_minus_velocity"], "prediction - DiT", entry["prediction_minus_dit"])
    assert entry["x0_max"] > 1e-2  # so a target of the noise alone would miss noise − x0 by far more than rounding
    assert max(entry["target_minus_velocity"]) < 1e-6
    assert max(entry["prediction_minus_dit"]) < 1e-5


def test_flux_gradient_checkpointing_and_bf16(flux_report: dict) -> None:
    """Checkpointing runs every double and single block again in the backward pass for the same LoRA (ComfyUI's
    FLUX blocks add into their input in place: see loop.training_blocks); bf16 autocast changes the arithmetic
    (losses differ from fp32) but stays within 2 %."""
    entry = flux_entry(flux_report, "tiny_flux1")
    plain, recomputed = entry["block_calls_plain_recomputed"]
    fp32, bf16 = entry["losses_fp32_bf16"]
    print("flux block calls", plain, recomputed, "losses fp32", fp32, "bf16", bf16)
    assert plain > 0 and recomputed == 2 * plain
    assert entry["checkpointing_max_diff"] == 0.0
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.02)


# --- Qwen-Image and Z-Image (tiny DiTs of make_qwen_models.py) --------------------------------

QWEN_LAYERS = {
    "tiny_qwen_image": [
        f"transformer_blocks_0_attn_{name}"
        for name in ("to_k", "to_v", "to_out_0", "add_k_proj", "add_v_proj", "to_add_out")
    ],
    "tiny_z_image": [
        f"{block}_attention_{name}"
        for block in ("layers_0", "noise_refiner_0", "noise_refiner_1", "context_refiner_0", "context_refiner_1")
        for name in ("qkv", "out")
    ],
}
"""The DreamMix recipe's layers in kohya names, read off ComfyUI's classes: Qwen-Image's one block, k, v and out of
its image (to_*) and text (add_*) streams; Z-Image's fused qkv and out in its one layer and its four refiners."""


@pytest.fixture(scope="module")
def qwen_report(comfy_install, checkpoints, flux_folder, qwen_folder, tmp_path_factory) -> dict:
    return probe(comfy_install, checkpoints, tmp_path_factory, "qwen", str(flux_folder), str(qwen_folder))


@pytest.mark.newest_only  # older ComfyUI lacks Z-Image
@pytest.mark.parametrize("unet", list(QWEN_LAYERS))
def test_qwen_image_and_z_image_loras_round_trip(qwen_report: dict, unet: str) -> None:
    """Trained with regular data generated by the DiT itself, the LoRA holds exactly the recipe's layers under the
    keys LoraLoaderModelOnly maps (no "lora key not loaded"), records the family it was trained on (DreamMix Inpaint
    refuses it on another: test_flux), and the file loaded by it predicts what the trained MODEL predicts, bit for
    bit, which the base does not."""
    entry = qwen_report[unet]
    assert entry["recorded_family"] == {"tiny_qwen_image": "Qwen-Image", "tiny_z_image": "Z-Image"}[unet]
    print(unet, "round trip", entry["roundtrip_max_diff"], "vs base", entry["trained_vs_base_max_diff"])
    print(unet, "train seconds", entry["train_seconds"])
    assert entry["regular_images_shape"] == [1, 64, 64, 3]
    assert set(entry["lora_keys"]) == {
        f"lora_unet_{layer}.{kind}" for layer in QWEN_LAYERS[unet] for kind in LORA_TENSORS
    }
    assert entry["roundtrip_max_diff"] == 0.0
    assert entry["trained_vs_base_max_diff"] > 1e-4
    assert qwen_report["key_warnings"] == []


@pytest.mark.newest_only
def test_z_image_fused_qkv_trains_only_key_and_value_rows(qwen_report: dict) -> None:
    """Z-Image's `attention.qkv` (30 query heads, as many key-value heads, of 128) holds q in its first 3840 rows: the
    DreamMix recipe's up matrix left them zero and trained k's and v's (rank 4)."""
    entry = qwen_report["tiny_z_image"]
    assert (entry["hidden"], entry["qkv_rows"]) == (3840, 3 * 3840)
    assert entry["qkv_up_nonzero"] == {"q": 0, "kv": 2 * 3840 * 4}


@pytest.mark.newest_only
@pytest.mark.parametrize("unet", list(QWEN_LAYERS))
def test_training_draws_noise_levels_from_a_model_sampling_node(qwen_report: dict, unet: str) -> None:
    """With ModelSamplingAuraFlow in front of the trainer (shift 6 here; the Qwen-Image workflow sets 3.1), the DiT
    sees that schedule's σ at the drawn timestep index, not the model's own (Qwen-Image's 1.15, Z-Image's 3)."""
    entry = qwen_report[unet]
    print(unet, "seen", entry["timestep_seen"], "patched", entry["patched_sigma"], "base", entry["base_sigma"])
    assert abs(entry["patched_sigma"] - entry["base_sigma"]) > 1e-2
    assert entry["timestep_seen"] == pytest.approx(entry["patched_sigma"], abs=1e-6)


@pytest.mark.newest_only
@pytest.mark.parametrize("unet", list(QWEN_LAYERS))
def test_qwen_image_and_z_image_train_toward_the_velocity(qwen_report: dict, unet: str) -> None:
    """Both are flow models (Qwen-Image on FLUX's shifted schedule, Z-Image on the discrete flow with shift 3): the
    target is noise − x0 and the prediction the DiT's own output, as for FLUX."""
    entry = qwen_report[unet]
    print(unet, "target - velocity", entry["target_minus_velocity"], "prediction - DiT", entry["prediction_minus_dit"])
    assert entry["x0_max"] > 1e-2
    assert max(entry["target_minus_velocity"]) < 1e-6
    assert max(entry["prediction_minus_dit"]) < 1e-5


# --- SDXL (last: the models are large and slow on CPU) ---------------------------------------


@pytest.fixture(scope="module")
def sdxl_report(comfy_install, checkpoints, sdxl_checkpoints, tmp_path_factory) -> dict:
    assert "tiny_sdxl.safetensors" in sdxl_checkpoints
    return probe(comfy_install, checkpoints, tmp_path_factory, "sdxl")


def test_sdxl_lora_round_trips_without_key_warnings(sdxl_report) -> None:
    """SDXL size conditioning and pooled text reach training; LoraLoader maps every saved key."""
    print("SDXL round trip", sdxl_report["roundtrip_max_diff"], "vs base", sdxl_report["trained_vs_base_max_diff"])
    assert sdxl_report["roundtrip_max_diff"] < 1e-4
    assert sdxl_report["trained_vs_base_max_diff"] > 100 * max(sdxl_report["roundtrip_max_diff"], 1e-7)
    assert all(key.startswith("lora_unet_") for key in sdxl_report["lora_keys"])
    assert sdxl_report["key_warnings"] == []
