"""Exercises the training nodes on a real ComfyUI in one process; prints one JSON line `TRAINING_PROBE {...}`.

usage: python training_probe.py COMFYUI_PATH PACK_DIR CHECKPOINT_DIR WORK_DIR [FAMILY [FLUX_DIR [QWEN_DIR]]]
FAMILY is sd15, sdxl, flux (with FLUX_DIR) or qwen (with FLUX_DIR and QWEN_DIR).
PACK_DIR is a custom_nodes-style folder whose name ComfyUI imports the pack under. `sd15` (default)
runs every check on the tiny SD1.5 pair; `sdxl` trains on the tiny SDXL checkpoint and round-trips it;
`flux` trains on each tiny FLUX diffusion model in FLUX_DIR (make_flux_models.py) with the tiny SD1.5
checkpoint's CLIP-L as its text encoder, and round-trips the LoRAs; `qwen` does the same on the tiny Qwen-Image DiT
(with its Wan 2.1 VAE and tiny Qwen2.5-VL, make_qwen_models.py in QWEN_DIR) and the tiny Z-Image DiT (FLUX.1's VAE
from FLUX_DIR, CLIP-L).
Runs on the test device (device.py: CPU unless DREAMMIX_TEST_DEVICE=cuda). Calls ComfyUI's own
LoraLoaderModelOnly to load the saved LoRA (a test may call other nodes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

from device import comfyui_device_flags

SIDE = 64
RESUME_STEPS = 10
"""Steps of the cancel-and-resume runs: the cancel lands between step 3 and 9 whenever the progress hook hears."""
FLUX_MODELS = {"tiny_flux1": "tiny_flux1_vae", "tiny_flux1_fill": "tiny_flux1_vae", "tiny_flux2": "tiny_flux2_vae"}
"""The tiny FLUX diffusion models and their VAEs (make_flux_models.py); those this ComfyUI cannot detect are absent."""
QWEN_MODELS = {"tiny_qwen_image": "tiny_wan21_vae", "tiny_z_image": "tiny_flux1_vae"}
"""The tiny Qwen-Image and Z-Image DiTs and their VAEs (make_qwen_models.py, make_flux_models.py)."""


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main(
    comfyui: str, pack_dir: str, checkpoint_dir: str, work: str, family: str = "sd15", flux_dir: str = "", qwen_dir=""
) -> dict:
    sys.path.insert(0, comfyui)
    sys.argv = [sys.argv[0], *comfyui_device_flags()]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management
    import comfy.model_sampling
    import comfy.sample
    import comfy.sd
    import comfy.utils
    import folder_paths
    import torch

    import nodes

    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    logging.getLogger().setLevel(logging.INFO)  # the pack logs at INFO, as ComfyUI's own logger setup shows
    loras = os.path.join(work, "loras")
    os.makedirs(loras, exist_ok=True)
    folder_paths.add_model_folder_path("loras", loras, is_default=True)
    folder_paths.set_output_directory(os.path.join(work, "output"))
    if not asyncio.run(nodes.load_custom_node(pack_dir)):
        raise SystemExit("the pack did not load")
    sys.path.insert(0, pack_dir)  # the core alone, host-independent, to read the training checkpoints
    from dreammix_core.training.loop import load_checkpoint

    train_node = nodes.NODE_CLASS_MAPPINGS["DreamMixTrainSubjectLoRA"]
    data_node = nodes.NODE_CLASS_MAPPINGS["DreamMixRegularData"]

    def load(name: str):
        with torch.inference_mode():  # as CheckpointLoaderSimple runs in ComfyUI's executor: inference tensors
            return comfy.sd.load_checkpoint_guess_config(
                os.path.join(checkpoint_dir, name), output_vae=True, output_clip=True
            )[:3]

    model, clip, vae = load("tiny_sd15.safetensors" if family in ("flux", "qwen") else f"tiny_{family}.safetensors")

    # four subject "photos" of different sizes: a coloured square on a grey background
    generator = torch.Generator().manual_seed(0)
    images, masks = [], []
    for i, (h, w) in enumerate([(64, 64), (80, 64), (64, 96), (72, 72)]):
        image = torch.full((1, h, w, 3), 0.5)
        mask = torch.zeros(1, h, w)
        top, left = h // 4, w // 4
        image[0, top : top + h // 2, left : left + w // 2] = torch.rand(3, generator=generator)
        mask[0, top : top + h // 2, left : left + w // 2] = 1
        images.append(image)
        masks.append(mask)

    def recipe(**overrides) -> dict:
        base = {
            "instance_prompt": "a photo of a sks box",
            "regular_dataset": "",
            "lora_name": "probe",
            "steps": 6,
            "learning_rate": 1e-3,
            "rank": 4,
            "alpha": 4.0,
            "target_modules": "attention k, v, out (DreamMix)",
            "grad_accumulation": 1,
            "regular_probability": 0.3,
            "inside_weight": 1.5,
            "outside_weight": 0.6,
            "subject_copies": 10,
            "regular_copies": 3,
            "resolution": SIDE,
            "seed": 7,
            "checkpoint_every": 2,
            "gradient_checkpointing": False,
            "training_dtype": "fp32",
        }
        base.update(overrides)
        return {key: [value] for key, value in base.items()}

    def run_train(model_, clip_, vae_, **overrides):
        with torch.inference_mode():  # as ComfyUI's executor runs nodes
            return train_node.execute([model_], [clip_], [vae_], images, masks, **recipe(**overrides)).args

    report: dict = {}

    def key_warnings() -> list[str]:
        return [line for line in capture.lines if "lora key not loaded" in line or "NOT LOADED" in line]

    def output_of(patcher, prompt: str, latent_vae, text_encoder=None) -> torch.Tensor:
        """The model's denoised prediction for a fixed noisy latent (of `latent_vae`'s layout for a SIDE image) and
        the prompt (encoded by `text_encoder`, the tiny SD1.5's CLIP unless given), the patcher's patches applied."""
        text_encoder = text_encoder or clip
        cell = latent_vae.spacial_compression_encode()
        shape = (1, latent_vae.latent_channels, SIDE // cell, SIDE // cell)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        x = comfy.sample.fix_empty_latent_channels(patcher, x)  # a video latent (Qwen-Image's) has one frame
        flow = isinstance(patcher.model.model_sampling, comfy.model_sampling.CONST)
        sigma = torch.tensor([0.5 if flow else 3.0])
        context, pooled = text_encoder.encode_from_tokens(text_encoder.tokenize(prompt), return_pooled=True)
        conds = patcher.model.extra_conds(
            cross_attn=context, pooled_output=pooled, width=SIDE, height=SIDE, noise=x, device=torch.device("cpu")
        )
        comfy.model_management.load_models_gpu([patcher], force_full_load=True)
        with torch.no_grad():
            return patcher.model.apply_model(x, sigma, **{key: value.cond for key, value in conds.items()}).clone()

    def output(patcher, prompt: str) -> torch.Tensor:
        return output_of(patcher, prompt, vae)

    def round_trip(trained, lora_file: str, prompt: str, base=None, base_vae=None, text_encoder=None) -> dict:
        """The saved LoRA through ComfyUI's LoraLoaderModelOnly against the trained MODEL and the base."""
        if base is None:
            base, base_vae = model, vae
        loaded = nodes.LoraLoaderModelOnly().load_lora_model_only(base, lora_file, 1.0)[0]
        out_trained, out_loaded, out_base = (
            output_of(patcher, prompt, base_vae, text_encoder) for patcher in (trained, loaded, base)
        )
        keys = sorted(comfy.utils.load_torch_file(os.path.join(loras, lora_file)))
        return {
            "roundtrip_max_diff": float((out_trained - out_loaded).abs().max()),
            "trained_vs_base_max_diff": float((out_trained - out_base).abs().max()),
            "lora_keys": keys[:3],
            "lora_key_count": len(keys),
        }

    if family == "flux":
        return flux_checks(flux_dir, clip, run_train, output_of, round_trip, key_warnings, data_node)
    if family == "qwen":
        return qwen_checks(flux_dir, qwen_dir, clip, run_train, round_trip, key_warnings, data_node)

    if family == "sdxl":
        start = time.perf_counter()
        trained, lora_file, _ = run_train(
            model, clip, vae, lora_name="sdxl", steps=3, learning_rate=3e-3, subject_copies=1, checkpoint_every=0
        )
        report["train_seconds"] = time.perf_counter() - start
        report |= round_trip(trained, lora_file, "a photo of a sks box")
        nodes.LoraLoader().load_lora(model, clip, lora_file, 1.0, 1.0)
        report["key_warnings"] = key_warnings()
        return report

    # 1. over-fitting four images: the loss falls
    start = time.perf_counter()
    trained, lora_file, curve = run_train(
        model, clip, vae, lora_name="overfit", steps=40, learning_rate=3e-3, subject_copies=1, checkpoint_every=40
    )
    report["overfit_seconds"] = time.perf_counter() - start
    report["base_weights_inference"] = sum(p.is_inference() for p in model.model.parameters())
    report["base_weights_requiring_grad"] = sum(p.requires_grad for p in model.model.parameters())
    report["base_weights_with_grad"] = sum(p.grad is not None for p in model.model.parameters())
    report["curve_shape"] = list(curve.shape)

    # 2. the saved LoRA through ComfyUI's LoraLoaderModelOnly reproduces the trained MODEL
    report |= round_trip(trained, lora_file, "a photo of a sks box")

    # 3. losses of the over-fitting run, read from its last checkpoint
    last = load_checkpoint(os.path.join(loras, "overfit.checkpoints", "step_000040.state"))
    report["losses"] = [round(v, 5) for v in last["losses"]]

    # 4. cancelled midway then resumed == uninterrupted. ComfyUI (since 0.3.6x) passes progress on at most every
    # 100 ms, so which step the hook hears first past step 2 depends on the machine: it cancels there and says where.
    run_train(model, clip, vae, lora_name="straight", steps=RESUME_STEPS, checkpoint_every=2)

    def hook(value, total, preview, node_id=None):
        if total == RESUME_STEPS and 3 <= value < total and "interrupt_step" not in report:  # training, not encoding
            report["interrupt_step"] = value
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        run_train(model, clip, vae, lora_name="resumed", steps=RESUME_STEPS, checkpoint_every=2)
        report["interrupted"] = False
    except comfy.model_management.InterruptProcessingException:
        report["interrupted"] = True
    finally:
        comfy.model_management.interrupt_current_processing(False)
        comfy.utils.set_progress_bar_global_hook(None)
    report["checkpoints_after_cancel"] = sorted(os.listdir(os.path.join(loras, "resumed.checkpoints")))
    report["lora_after_cancel"] = os.path.exists(os.path.join(loras, "resumed.safetensors"))
    run_train(model, clip, vae, lora_name="resumed", steps=RESUME_STEPS, checkpoint_every=2)
    a = comfy.utils.load_torch_file(os.path.join(loras, "straight.safetensors"))
    b = comfy.utils.load_torch_file(os.path.join(loras, "resumed.safetensors"))
    report["resume_max_diff"] = max(float((a[k] - b[k]).abs().max()) for k in a)
    report["resume_same_keys"] = sorted(a) == sorted(b)

    # 5. an existing LoRA is never overwritten
    try:
        run_train(model, clip, vae, lora_name="straight", steps=1)
        report["overwrite_refused"] = False
    except Exception as error:  # DreamMixInputError, imported under the pack's module name
        report["overwrite_refused"] = "already exists" in str(error)

    # 6. regular data: generated once, reused on a re-run; then ADM training with it
    args = dict(
        regular_prompts="a photo of a box\na photo of a red box",
        images_per_prompt=2,
        dataset_folder="regular_probe",
        resolution=SIDE,
        steps=2,
        cfg=4.0,
        sampler_name="euler",
        scheduler="normal",
        seed=0,
        background_suffix=", plain background",
        negative_prompt="",
        mask_threshold=0.15,
    )
    with torch.inference_mode():
        start = time.perf_counter()
        folder, preview, regular_masks = data_node.execute(model, clip, vae, **args).args
        first = time.perf_counter() - start
        files = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs)
        mtimes = [os.path.getmtime(f) for f in files]
        start = time.perf_counter()
        folder2, preview2, _ = data_node.execute(model, clip, vae, **{**args, "images_per_prompt": 3}).args
        second = time.perf_counter() - start
    files_after = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs)
    report["regular_files"] = len(files)
    report["regular_files_after_rerun"] = len(files_after)
    report["regular_reused_unchanged"] = all(os.path.getmtime(f) == m for f, m in zip(files, mtimes))
    report["regular_preview_shapes"] = [list(preview.shape), list(preview2.shape), list(regular_masks.shape)]
    report["regular_reused_equal"] = bool(torch.equal(preview, preview2[[0, 1, 3, 4]]))
    report["regular_seconds"] = [first, second]
    _, adm_lora, _ = run_train(model, clip, vae, lora_name="adm", steps=3, regular_dataset=folder)
    before_refusals = os.listdir(loras)
    report["adm_lora"] = adm_lora

    # 6b. refused before any image is generated or any step trained: no text encoder (a checkpoint without one), a
    #     mask of no MASK shape, and a model without UNet attention projections (ComfyUI's SD3 MMDiT, tiny)
    def refusal(call) -> str:
        try:
            with torch.inference_mode():  # as ComfyUI's executor runs nodes
                call()
        except Exception as error:  # DreamMixInputError, imported under the pack's module name
            return f"{type(error).__name__}: {error}"
        return "accepted"

    def tiny_sd3():
        """What UNETLoader gives for an SD3 checkpoint (attention named attn.qkv, attn.proj), one block of width 64
        with unset weights, taking SD1.5's 768-wide text and pooled vector."""
        import comfy.model_patcher
        import comfy.supported_models

        config = comfy.supported_models.SD3(
            {
                "in_channels": 16,
                "pos_embed_scaling_factor": None,
                "depth": 1,
                "patch_size": 2,
                "pos_embed_max_size": 8,
                "num_patches": 64,
                "adm_in_channels": 768,
                "context_embedder_config": {
                    "target": "torch.nn.Linear",
                    "params": {"in_features": 768, "out_features": 64},
                },
            }
        )
        config.set_inference_dtype(torch.float32, None)
        return comfy.model_patcher.ModelPatcher(
            config.get_model({}),
            load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device(),
        )

    report["refusals"] = {
        "regular_data_without_clip": refusal(lambda: data_node.execute(model, None, vae, **args)),
        "training_without_clip": refusal(lambda: run_train(model, None, vae, lora_name="no_clip")),
        "mask_of_no_mask_shape": refusal(
            lambda: train_node.execute([model], [clip], [vae], images, [torch.rand(8)], **recipe(lora_name="odd"))
        ),
        "sd3_model": refusal(lambda: run_train(tiny_sd3(), clip, vae, lora_name="sd3", subject_copies=1)),
    }
    report["refusals_left_no_file"] = sorted(os.listdir(loras)) == sorted(before_refusals)

    # 7. inpainting-mode training on the 9-channel model
    inpaint_model, inpaint_clip, inpaint_vae = load("tiny_sd15_inpaint.safetensors")
    _, inpaint_lora, _ = run_train(inpaint_model, inpaint_clip, inpaint_vae, lora_name="inpaint", steps=2)
    loaded_inpaint = nodes.LoraLoaderModelOnly().load_lora_model_only(inpaint_model, inpaint_lora, 1.0)[0]
    comfy.model_management.load_models_gpu([loaded_inpaint], force_full_load=True)
    report["inpaint_lora"] = inpaint_lora

    # 8. gradient checkpointing changes memory, not the result; bf16 / fp16 autocast train to finite, close losses
    def lora_of(name: str, **overrides) -> tuple[dict, list[float]]:
        run_train(model, clip, vae, lora_name=name, steps=3, checkpoint_every=3, **overrides)
        state = load_checkpoint(os.path.join(loras, f"{name}.checkpoints", "step_000003.state"))
        return comfy.utils.load_torch_file(os.path.join(loras, f"{name}.safetensors")), state["losses"]

    attention_calls = {"n": 0}
    attentions = [m for m in model.model.diffusion_model.modules() if type(m).__name__ == "CrossAttention"]
    hooks = [m.register_forward_hook(lambda *_: attention_calls.update(n=attention_calls["n"] + 1)) for m in attentions]
    plain, plain_losses = lora_of("plain")
    calls_plain = attention_calls["n"]
    recomputed, recomputed_losses = lora_of("recomputed", gradient_checkpointing=True)
    report["attention_calls"] = [calls_plain, attention_calls["n"] - calls_plain]  # recomputation runs them again
    for hook in hooks:
        hook.remove()
    report["checkpointing_max_diff"] = max(float((plain[k] - recomputed[k]).abs().max()) for k in plain)
    report["checkpointing_losses"] = [plain_losses, recomputed_losses]
    report["autocast_losses"] = {"fp32": plain_losses}
    for dtype in ("bf16", "fp16"):
        _, report["autocast_losses"][dtype] = lora_of(f"autocast_{dtype}", training_dtype=dtype)

    # 9. copies that are the same crop of a photo are encoded once
    report["encode_logs"] = [line for line in capture.lines if "distinct VAE encodes" in line]

    # 10. LoraLoader (model + clip) too
    nodes.LoraLoader().load_lora(model, clip, lora_file, 1.0, 1.0)
    report["key_warnings"] = key_warnings()

    # 11. a LoRA trained without ComfyUI (dreammix_core.training.diffusers_training, written by the test with core.json:
    #     the ComfyUI weight each module must patch, mapped by hand): LoraLoaderModelOnly against W + alpha/rank·up@down
    core_file = os.path.join(loras, "core.safetensors")
    if os.path.exists(core_file):
        with open(os.path.join(loras, "core.json")) as file:
            targets = json.load(file)
        loaded = nodes.LoraLoaderModelOnly().load_lora_model_only(model, "core.safetensors", 1.0)[0]
        report["core_key_warnings"] = key_warnings()
        report["core_patched"] = sorted(loaded.patches)
        out_loaded, out_base = output(loaded, "a photo"), output(model, "a photo")
        comfy.model_management.load_models_gpu([model], force_full_load=True)  # unpatched: the base weights
        lora = comfy.utils.load_torch_file(core_file)
        with torch.inference_mode():  # in place on the base weights, whatever kind of tensor they are now
            for module, weight in targets.items():
                up, down = lora[f"{module}.lora_up.weight"], lora[f"{module}.lora_down.weight"]
                base_weight = comfy.utils.get_attr(model.model, weight)
                base_weight += float(lora[f"{module}.alpha"]) / down.shape[0] * (up @ down).to(base_weight.dtype)
        by_hand = output(model, "a photo")
        report["core_change"] = float((out_loaded - out_base).abs().max())
        report["core_vs_by_hand"] = float((out_loaded - by_hand).abs().max())
    return report


def flux_checks(flux_dir: str, clip, run_train, output_of, round_trip, key_warnings, data_node) -> dict:
    """Per tiny FLUX model: regular data generated with it, a short training run with that data, its LoRA's keys
    and fused-layer parts, the round trip through LoraLoaderModelOnly, the run resumed from its step-2 checkpoint,
    and (FLUX.1 Fill) the mask the model saw; on FLUX.1, gradient checkpointing and bf16 autocast."""
    import comfy.sd
    import comfy.utils
    import folder_paths
    import torch

    from dreammix_core.training.loop import load_checkpoint  # the pack's core, on sys.path since main()

    report: dict = {}
    for unet, vae_name in FLUX_MODELS.items():
        path = os.path.join(flux_dir, "diffusion_models", f"{unet}.safetensors")
        if not os.path.exists(path):
            continue
        with torch.inference_mode():  # as UNETLoader / VAELoader run in ComfyUI's executor
            model = comfy.sd.load_diffusion_model(path)
            vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(os.path.join(flux_dir, "vae", f"{vae_name}.safetensors")))
        dit = model.model.diffusion_model
        seen_masks: list[list[float]] = []

        def fill_mask(module, args, kwargs):
            """FLUX.1 Fill's input: 16 noisy + 16 masked-image latent channels + 64 mask channels (8x8 folded)."""
            x = args[0] if args else kwargs["x"]
            if x.shape[1] == 96 and torch.is_grad_enabled():
                seen_masks.append(sorted(float(v) for v in x[:, 32:].unique()))

        calls = {"n": 0}  # of each block's first projection: a recomputed block runs it again in the backward pass
        hooks = [dit.register_forward_pre_hook(fill_mask, with_kwargs=True)]
        hooks += [
            layer.register_forward_hook(lambda *_: calls.update(n=calls["n"] + 1))
            for name, layer in dit.named_modules()
            if name.endswith(("img_attn.qkv", "linear1"))
        ]
        recipe, lora_file, entry = train_on_own_regular_data(model, clip, vae, unet, data_node, run_train, round_trip)
        lora = comfy.utils.load_torch_file(os.path.join(folder_paths.get_folder_paths("loras")[0], lora_file))
        entry["lora_keys"] = sorted(lora)
        hidden = dit.hidden_size

        def nonzero(key: str, rows=slice(None), columns=slice(None)) -> int:
            return int(torch.count_nonzero(lora[key][rows, columns]))

        entry["nonzero"] = {
            "qkv_up_q": nonzero("lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", slice(0, hidden)),
            "qkv_up_kv": nonzero("lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", slice(hidden, None)),
            "txt_qkv_up_q": nonzero("lora_unet_double_blocks_0_txt_attn_qkv.lora_up.weight", slice(0, hidden)),
            "linear1_up_q": nonzero("lora_unet_single_blocks_0_linear1.lora_up.weight", slice(0, hidden)),
            "linear1_up_kv": nonzero("lora_unet_single_blocks_0_linear1.lora_up.weight", slice(hidden, 3 * hidden)),
            "linear1_up_mlp": nonzero("lora_unet_single_blocks_0_linear1.lora_up.weight", slice(3 * hidden, None)),
            "linear2_down_attention": nonzero(
                "lora_unet_single_blocks_0_linear2.lora_down.weight", columns=slice(0, hidden)
            ),
            "linear2_down_mlp": nonzero(
                "lora_unet_single_blocks_0_linear2.lora_down.weight", columns=slice(hidden, None)
            ),
        }
        entry["hidden"] = hidden
        entry["fill_masks_seen"] = seen_masks[:1]
        entry |= flow_target(model, clip, vae, dit, train_node_module(data_node))

        # resumed from the step-2 checkpoint (the LoRA and the last checkpoint removed): the same file
        lora_path = os.path.join(folder_paths.get_folder_paths("loras")[0], lora_file)
        os.remove(lora_path)
        os.remove(os.path.join(lora_path.removesuffix(".safetensors") + ".checkpoints", "step_000004.state"))
        run_train(model, clip, vae, lora_name=unet, **recipe)
        resumed = comfy.utils.load_torch_file(lora_path)
        entry["resume_same_keys"] = sorted(resumed) == sorted(lora)
        entry["resume_max_diff"] = max(float((resumed[k] - lora[k]).abs().max()) for k in lora)
        if unet == "tiny_flux1":  # gradient checkpointing recomputes the blocks; bf16 autocast trains close
            runs = {}
            for name, overrides in {
                "plain": {},
                "recomputed": {"gradient_checkpointing": True},
                "bf16": {"training_dtype": "bf16"},
            }.items():
                calls["n"] = 0
                run_train(model, clip, vae, lora_name=f"{unet}_{name}", steps=2, subject_copies=1, **overrides)
                file = os.path.join(folder_paths.get_folder_paths("loras")[0], f"{unet}_{name}.safetensors")
                state = load_checkpoint(
                    os.path.join(os.path.dirname(file), f"{unet}_{name}.checkpoints", "step_000002.state")
                )
                runs[name] = (comfy.utils.load_torch_file(file), calls["n"], state["losses"])
            entry["block_calls_plain_recomputed"] = [runs["plain"][1], runs["recomputed"][1]]
            entry["checkpointing_max_diff"] = max(
                float((runs["plain"][0][k] - runs["recomputed"][0][k]).abs().max()) for k in runs["plain"][0]
            )
            entry["losses_fp32_bf16"] = [runs["plain"][2], runs["bf16"][2]]
        for hook in hooks:
            hook.remove()
        report[unet] = entry
    report["key_warnings"] = key_warnings()
    return report


def train_on_own_regular_data(model, clip, vae, unet: str, data_node, run_train, round_trip) -> tuple:
    """Regular data generated with the model, a short training run with it, and the round trip of its LoRA through
    LoraLoaderModelOnly: (the training inputs, the LoRA file name, the report entry so far)."""
    import torch

    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        dataset, regular_images, _ = data_node.execute(
            model, clip, vae, regular_prompts="a photo of a box", images_per_prompt=1,
            dataset_folder=f"regular_{unet}", resolution=SIDE, steps=2, cfg=1.0, sampler_name="euler",
            scheduler="simple", seed=0, background_suffix="", negative_prompt="", mask_threshold=0.15,
        ).args  # fmt: skip
    entry = {"regular_images_shape": list(regular_images.shape)}
    recipe = dict(steps=4, learning_rate=1e-2, subject_copies=1, checkpoint_every=2, regular_dataset=dataset)
    start = time.perf_counter()
    trained, lora_file, _ = run_train(model, clip, vae, lora_name=unet, **recipe)
    entry["train_seconds"] = time.perf_counter() - start
    entry |= round_trip(trained, lora_file, "a photo of a sks box", model, vae, clip)
    return recipe, lora_file, entry


def qwen_checks(flux_dir: str, qwen_dir: str, clip_l, run_train, round_trip, key_warnings, data_node) -> dict:
    """Per tiny Qwen-Image / Z-Image DiT: regular data generated with it, a short training run with that data, its
    LoRA's keys and (Z-Image) the fused qkv rows it trained, the round trip through LoraLoaderModelOnly, and the
    flow target. Qwen-Image's prompts go through the tiny Qwen2.5-VL (loaded as the test node loads it), Z-Image's
    through CLIP-L (the tiny Z-Image reads a 768-wide context)."""
    import comfy.sd
    import comfy.utils
    import folder_paths
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_nodes import DreamMixTestTextEncoderLoader

    folder_paths.add_model_folder_path("text_encoders", os.path.join(qwen_dir, "text_encoders"))
    with torch.inference_mode():
        qwen_vl = DreamMixTestTextEncoderLoader().load("tiny_qwen25_7b.safetensors", "qwen_image")[0]
    report: dict = {}
    for unet, vae_name in QWEN_MODELS.items():
        path = os.path.join(qwen_dir, "diffusion_models", f"{unet}.safetensors")
        if not os.path.exists(path):
            continue
        vae_folder = qwen_dir if vae_name == "tiny_wan21_vae" else flux_dir
        text_encoder = qwen_vl if unet == "tiny_qwen_image" else clip_l
        with torch.inference_mode():  # as UNETLoader / VAELoader run in ComfyUI's executor
            model = comfy.sd.load_diffusion_model(path)
            vae = comfy.sd.VAE(
                sd=comfy.utils.load_torch_file(os.path.join(vae_folder, "vae", f"{vae_name}.safetensors"))
            )
        _, lora_file, entry = train_on_own_regular_data(
            model, text_encoder, vae, unet, data_node, run_train, round_trip
        )
        lora, metadata = comfy.utils.load_torch_file(
            os.path.join(folder_paths.get_folder_paths("loras")[0], lora_file), return_metadata=True
        )
        entry["lora_keys"] = sorted(lora)
        entry["recorded_family"] = json.loads(metadata["dreammix"])["family"]
        if unet == "tiny_z_image":
            up = lora["lora_unet_layers_0_attention_qkv.lora_up.weight"]
            hidden = model.model.diffusion_model.dim
            entry["qkv_up_nonzero"] = {
                "q": int(torch.count_nonzero(up[:hidden])), "kv": int(torch.count_nonzero(up[hidden:]))
            }  # fmt: skip
            entry["hidden"], entry["qkv_rows"] = hidden, up.shape[0]
        dit, package = model.model.diffusion_model, train_node_module(data_node)
        entry |= flow_target(model, text_encoder, vae, dit, package)
        entry |= shifted_schedule(model, text_encoder, vae, dit, package)
        report[unet] = entry
    report["key_warnings"] = key_warnings()
    return report


def shifted_schedule(model, clip, vae, dit, package: str) -> dict:
    """The noise level the trainer's predictor gives the DiT at the middle of its timestep table, on the model
    patched by ModelSamplingAuraFlow (shift 6, far from both models' own shifts; the Qwen-Image workflow sets 3.1),
    against the patched and the base schedules' σ there: training must draw from the schedule the workflow samples
    with. The patched model is loaded as training loads it; run last, as loading it patches the shared base model."""
    import comfy.model_management
    import torch
    from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow

    training = sys.modules[f"{package}.nodes.training.comfy_training"]
    from dreammix_core.training.data import Copy

    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        patched = ModelSamplingAuraFlow().patch_aura(model, 6.0)[0]
    copy = Copy(torch.rand(3, SIDE, SIDE), torch.ones(1, SIDE, SIDE), 0, False)
    latents, conds, _ = training.encode_copies(patched, clip, vae, [copy], ["a photo of a sks box"], SIDE)
    predict = training.predictor(patched, latents, conds, None)
    base_sigmas = model.model.model_sampling.sigmas.clone()
    patched_sigmas = patched.get_model_object("model_sampling").sigmas.clone()  # its own length (FLUX's: 10000)
    index = len(patched_sigmas) // 2
    comfy.model_management.load_models_gpu([patched], force_full_load=True)
    seen: list[float] = []
    hook = dit.register_forward_pre_hook(lambda module, args: seen.append(float(args[1].flatten()[0])))
    try:
        with torch.no_grad():
            predict(0, torch.randn(latents[0][None].shape), index)
    finally:
        hook.remove()
    return {
        "timestep_seen": seen[0],
        "patched_sigma": float(patched_sigmas[index]),
        "base_sigma": float(base_sigmas[len(base_sigmas) // 2]),
    }


def train_node_module(node) -> str:
    """The pack's package name as ComfyUI imported it (the prefix of any of its node modules)."""
    return node.__module__.split(".nodes.")[0]


def flow_target(model, clip, vae, dit, package: str) -> dict:
    """What the trainer fits on a flow model, from its own predictor on one encoded copy at 3 timesteps, against
    the rectified-flow velocity written out here: with x_t = σ·noise + (1 − σ)·x0 the target is noise − x0, and the
    prediction is the DiT's own output (ComfyUI's CONST sampling turns it into x0 as x_t − σ·output); the prediction's
    difference is reported times σ, in the latent's own units."""
    import torch

    training = sys.modules[f"{package}.nodes.training.comfy_training"]
    from dreammix_core.training.data import Copy

    generator = torch.Generator().manual_seed(3)
    copy = Copy(torch.rand(3, SIDE, SIDE, generator=generator), (torch.rand(1, SIDE, SIDE) > 0.5).float(), 0, False)
    latents, conds, _ = training.encode_copies(model, clip, vae, [copy], ["a photo of a sks box"], SIDE)
    predict = training.predictor(model, latents, conds, None)
    sampling = model.model.model_sampling
    outputs: list = []
    hook = dit.register_forward_hook(lambda module, args, output: outputs.append(output.detach().float().cpu()))
    target_diff, prediction_diff = [], []
    try:
        for timestep in (0, len(sampling.sigmas) // 2, len(sampling.sigmas) - 1):
            noise = torch.randn(latents[0][None].shape, generator=generator)
            with torch.no_grad():
                prediction, target = predict(0, noise, timestep)
            velocity = noise - latents[0][None]
            target_diff.append(float((target.cpu() - velocity).abs().max()))
            # × σ: the prediction is (x_t − x0_hat) / σ, whose float rounding grows as 1/σ near the clean end
            sigma = float(sampling.sigmas[timestep])
            prediction_diff.append(sigma * float((prediction.cpu() - outputs[-1]).abs().max()))
    finally:
        hook.remove()
    return {
        "target_minus_velocity": target_diff,
        "prediction_minus_dit": prediction_diff,
        "x0_max": float(latents[0].abs().max()),
    }


if __name__ == "__main__":
    print("TRAINING_PROBE " + json.dumps(main(*sys.argv[1:8])))
