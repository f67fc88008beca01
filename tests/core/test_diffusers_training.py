"""Subject LoRA training on diffusers components with a peft LoRA (dreammix_core.training.diffusers_training), end to
end on tiny random models: what the file holds, what the UNet sees, resuming, and the refusals."""

import json
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tiny_models import POOLED_DIM, TEXT_DIM, tiny_scheduler, tiny_sd_pipeline, tiny_sdxl_unet, tiny_vae

from dreammix_core.errors import DreamMixInputError
from dreammix_core.training.data import Photo, expand, step_generator
from dreammix_core.training.diffusers_training import DiffusersTrainingHost
from dreammix_core.training.loop import LoopSettings
from dreammix_core.training.lora_file import TrainingRecord, save_lora
from dreammix_core.training.subject_lora import LoraRecipe, train_subject_lora

RECIPE = LoraRecipe(resolution=64, subject_copies=2)
SETTINGS = LoopSettings(steps=3, grad_accumulation=1, learning_rate=1e-2, checkpoint_every=0, seed=5)


def sd_host(pipe=None, dtype: torch.dtype | None = None) -> DiffusersTrainingHost:
    """The training host of `pipe` (default: a fresh tiny SD pipeline, the same random weights every time)."""
    return DiffusersTrainingHost(pipe or tiny_sd_pipeline(), dtype)


def photos(count: int = 2) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(11)
    images = [torch.rand(80, 72, 3, generator=generator) for _ in range(count)]
    masks = []
    for i in range(count):
        mask = torch.zeros(80, 72)
        mask[20 + 4 * i : 56, 16 : 50 - 3 * i] = 1
        masks.append(mask)
    return images, masks


def attention_projections(unet, names: tuple[str, ...]) -> list[str]:
    return [name for name, _ in unet.named_modules() if re.search(r"\.attn[12]\.(" + "|".join(names) + r")$", name)]


def assert_trained_by_hand(trained_unet, by_hand_unet) -> None:
    """The UNet with the LoRA added by hand predicts what the trained one does, and the LoRA changed the
    untrained UNet's prediction (so a wrong scale would show)."""
    generator = torch.Generator().manual_seed(0)
    sample, tokens = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 16, 32, generator=generator)
    with torch.no_grad():
        trained = trained_unet(sample, 500, encoder_hidden_states=tokens).sample
        by_hand = by_hand_unet(sample, 500, encoder_hidden_states=tokens).sample
        untouched = tiny_sd_pipeline().unet(sample, 500, encoder_hidden_states=tokens).sample
    assert (trained - untouched).abs().max() > 1e-3
    torch.testing.assert_close(by_hand, trained, atol=2e-5, rtol=1e-4)


def test_the_file_holds_k_v_out_of_every_attention_and_applied_by_hand_gives_the_trained_unet(tmp_path) -> None:
    pipe = tiny_sd_pipeline()
    base = tiny_sd_pipeline().unet  # the same random weights, never trained
    path = tmp_path / "subject.safetensors"
    result = train_subject_lora(sd_host(pipe), *photos(), "a photo of a sks backpack", str(path), SETTINGS, RECIPE)
    assert result.step == 3 and len(result.losses) == 3

    state = load_file(path)
    projections = attention_projections(base, ("to_k", "to_v", r"to_out\.0"))
    assert len(projections) == 3 * 2 * 4  # k, v, out of self- and cross-attention in 4 transformer blocks
    expected = {
        f"lora_unet_{name.replace('.', '_')}.{part}"
        for name in projections
        for part in ("lora_up.weight", "lora_down.weight", "alpha")
    }
    assert set(state) == expected  # nothing on the query, nothing outside attention
    with safe_open(path, "pt") as file:
        metadata = file.metadata()
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "4.0"
    assert json.loads(metadata["dreammix"]) == {
        "instance_prompt": "a photo of a sks backpack", "steps": 3, "rank": 4, "alpha": 4.0, "seed": 5,
        "resolution": 64, "targets": "attention k, v, out (DreamMix)", "inpainting": False, "family": "SD1.5",
    }  # fmt: skip
    assert not any(param.requires_grad for param in pipe.unet.parameters())  # frozen again after training

    # W' = W + alpha / rank · up @ down, by hand on the untouched copy, must be the trained UNet with its adapter.
    modules = dict(base.named_modules())
    with torch.no_grad():
        for name in projections:
            key = f"lora_unet_{name.replace('.', '_')}"
            up, down = state[f"{key}.lora_up.weight"], state[f"{key}.lora_down.weight"]
            assert down.shape[0] == 4
            modules[name].weight += float(state[f"{key}.alpha"]) / down.shape[0] * up @ down
    assert_trained_by_hand(pipe.unet, base)


def test_alpha_other_than_rank_is_the_files_alpha_and_scales_the_update_by_alpha_over_rank(tmp_path) -> None:
    """Rank 4, alpha 8: every layer's alpha and kohya's metadata say 8 (a loader scales by alpha / rank, so a file
    holding the rank would apply half the update), and W + 8/4 · up @ down on the untouched UNet is the trained one."""
    pipe = tiny_sd_pipeline()
    base = tiny_sd_pipeline().unet
    path = tmp_path / "alpha8.safetensors"
    train_subject_lora(
        sd_host(pipe), *photos(), "a photo of a sks backpack", str(path), SETTINGS, replace(RECIPE, alpha=8.0)
    )
    state = load_file(path)
    alphas = {key: float(value) for key, value in state.items() if key.endswith(".alpha")}
    assert len(alphas) == 3 * 2 * 4 and set(alphas.values()) == {8.0}
    with safe_open(path, "pt") as file:
        metadata = file.metadata()
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"]) == ("4", "8.0")
    assert (json.loads(metadata["dreammix"])["rank"], json.loads(metadata["dreammix"])["alpha"]) == (4, 8.0)

    modules = dict(base.named_modules())
    with torch.no_grad():
        for key in alphas:
            name = key.removeprefix("lora_unet_").removesuffix(".alpha")
            module = next(m for n, m in modules.items() if n.replace(".", "_") == name)
            up, down = state[f"lora_unet_{name}.lora_up.weight"], state[f"lora_unet_{name}.lora_down.weight"]
            assert (up.shape[1], down.shape[0]) == (4, 4)
            module.weight += 8.0 / 4 * up @ down
    assert_trained_by_hand(pipe.unet, base)


def test_save_lora_writes_the_records_alpha_not_its_rank(tmp_path) -> None:
    record = TrainingRecord("a sks toy", 1, 4, 8.0, 0, 64, "attention k, v, out (DreamMix)", False, "SD1.5")
    pairs = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k": (torch.zeros(8, 4), torch.ones(4, 8))}
    save_lora(str(tmp_path / "a.safetensors"), pairs, record)
    state = load_file(tmp_path / "a.safetensors")
    assert float(state["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k.alpha"]) == 8.0
    with safe_open(tmp_path / "a.safetensors", "pt") as file:
        assert (file.metadata()["ss_network_dim"], file.metadata()["ss_network_alpha"]) == ("4", "8.0")


def test_a_cancelled_run_resumes_to_the_uninterrupted_file(tmp_path) -> None:
    settings = LoopSettings(steps=4, grad_accumulation=2, learning_rate=1e-2, checkpoint_every=1, seed=2)
    straight = tmp_path / "straight.safetensors"
    train_subject_lora(sd_host(), *photos(), "a sks backpack", str(straight), settings, RECIPE)

    resumed = tmp_path / "resumed.safetensors"
    calls = 0

    def cancel_in_step_three() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # first micro-step of optimizer step 3
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_subject_lora(
            sd_host(), *photos(), "a sks backpack", str(resumed), settings, RECIPE,
            check_interrupt=cancel_in_step_three,
        )  # fmt: skip
    assert not resumed.exists()
    assert sorted(p.name for p in resumed.with_suffix(".checkpoints").iterdir()) == [
        "step_000001.state",
        "step_000002.state",
    ]
    result = train_subject_lora(sd_host(), *photos(), "a sks backpack", str(resumed), settings, RECIPE)
    assert result.resumed_from == 2
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_inpainting_unet_gets_the_noisy_latent_the_latent_mask_and_the_masked_image(tmp_path) -> None:
    pipe = tiny_sd_pipeline(in_channels=9)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, num_train_timesteps=100)
    seen = []
    pipe.unet.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    settings = LoopSettings(steps=1, grad_accumulation=1, checkpoint_every=0, seed=7)
    recipe = LoraRecipe(resolution=64, subject_copies=1)
    images, masks = photos(1)
    train_subject_lora(
        sd_host(pipe), images, masks, "a sks backpack", str(tmp_path / "i.safetensors"), settings, recipe
    )
    model_in = seen[0]
    assert model_in.shape == (1, 9, 8, 8)

    copy = expand([Photo(images[0], masks[0], 0)], [], 64, seed=7, subject_copies=1)[0]
    cell_mask = copy.mask.reshape(1, 8, 8, 8, 8).amax(dim=(2, 4))  # a latent cell is masked if any pixel is
    assert 0 < cell_mask.sum() < 64
    assert torch.equal(model_in[:, 4], cell_mask)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pipe.vae.encode(pixels[None] * 2 - 1).latent_dist.mode() * pipe.vae.config.scaling_factor

    hole = copy.image.clone()
    hole[:, copy.mask[0] > 0] = 0.5
    torch.testing.assert_close(model_in[:, 5:], encode(hole))

    # x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, with ε and t drawn from micro-step 0's generator (one subject copy: the
    # sampler's draw comes first) and ᾱ from SD's scaled-linear betas over the scheduler's 100 training timesteps.
    generator = step_generator(7, 0)
    torch.randint(1, (), generator=generator)
    noise = torch.randn(1, 4, 8, 8, generator=generator)
    t = int(torch.randint(100, (), generator=generator))  # over the scheduler's 100 training timesteps
    alpha_bar = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 100, dtype=torch.float64) ** 2, 0)[t]
    expected = alpha_bar.sqrt() * encode(copy.image).double() + (1 - alpha_bar).sqrt() * noise.double()
    torch.testing.assert_close(model_in[:, :4].double(), expected, atol=1e-5, rtol=1e-5)


def test_sdxl_unets_get_the_pooled_prompt_and_the_training_size(tmp_path) -> None:
    """A pipeline double: the real tiny SDXL UNet and VAE, prompts encoded to fixed random embeddings."""
    generator = torch.Generator().manual_seed(3)
    encoded = {
        "a sks toy": (
            torch.randn(1, 77, TEXT_DIM, generator=generator),
            torch.randn(1, POOLED_DIM, generator=generator),
        ),
        "a toy": (torch.randn(1, 77, TEXT_DIM, generator=generator), torch.randn(1, POOLED_DIM, generator=generator)),
    }
    unet = tiny_sdxl_unet(4)
    pipe = SimpleNamespace(
        unet=unet, vae=tiny_vae(), scheduler=tiny_scheduler(),
        encode_prompt=lambda text, **_: (encoded[text][0], None, encoded[text][1], None),
    )  # fmt: skip
    calls = []
    unet.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    images, masks = photos(1)
    regular = [("a toy", images[0].flip(0), masks[0])]
    settings = LoopSettings(steps=6, grad_accumulation=1, checkpoint_every=0, seed=1)
    recipe = LoraRecipe(resolution=128, subject_copies=1, regular_copies=1, regular_probability=0.5)
    train_subject_lora(
        sd_host(pipe), images, masks, "a sks toy", str(tmp_path / "x.safetensors"), settings, recipe, regular
    )
    with safe_open(tmp_path / "x.safetensors", "pt") as file:
        assert json.loads(file.metadata()["dreammix"])["family"] == "SDXL"
    drawn = set()
    for kwargs in calls:
        assert kwargs["added_cond_kwargs"]["time_ids"].tolist() == [[128, 128, 0, 0, 128, 128]]
        prompt = next(p for p, (tokens, _) in encoded.items() if torch.equal(kwargs["encoder_hidden_states"], tokens))
        assert torch.equal(kwargs["added_cond_kwargs"]["text_embeds"], encoded[prompt][1])
        drawn.add(prompt)
    assert drawn == {"a sks toy", "a toy"}  # both the subject and the regular prompt reached the UNet


def test_refusals(tmp_path) -> None:
    images, masks = photos()
    existing = tmp_path / "taken.safetensors"
    existing.write_bytes(b"a user's file")
    taken = (
        f"The LoRA taken.safetensors already exists in {tmp_path}: choose another name (existing LoRAs are never "
        "overwritten), or delete the file to train it again."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(taken) + "$"):
        train_subject_lora(sd_host(), images, masks, "a sks toy", str(existing), SETTINGS, RECIPE)
    assert existing.read_bytes() == b"a user's file"
    unpaired = "2 subject photos but 3 masks: give one mask for all, or one per subject photo."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(unpaired) + "$"):
        train_subject_lora(
            sd_host(), images, masks + masks[:1], "a sks toy",
            str(tmp_path / "a.safetensors"),
        )  # fmt: skip
    assert not (tmp_path / "a.checkpoints").exists()
    pipe = tiny_sd_pipeline()
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type="v_prediction")
    v_model = "This UNet predicts v_prediction; the DreamMix loss is on epsilon (SD1.5, SDXL)."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(v_model) + "$"):
        train_subject_lora(sd_host(pipe), images, masks, "a sks toy", str(tmp_path / "b.safetensors"), SETTINGS, RECIPE)


def test_one_mask_for_all_photos_is_that_mask_given_with_each(tmp_path) -> None:
    """The pack's rule for masks against images (one for all, or one each) holds for subject photos too: one mask
    trains exactly as that mask repeated for every photo, and both photos are trained on."""
    images, masks = photos()
    files = {}
    for name, given in (("one", masks[:1]), ("each", [masks[0], masks[0]]), ("first photo", masks[:1])):
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        photos_given = images[:1] if name == "first photo" else images
        train_subject_lora(sd_host(), photos_given, given, "a sks toy", str(path),
                           SETTINGS, RECIPE)  # fmt: skip
        files[name] = load_file(path)
    assert all(torch.equal(files["one"][key], files["each"][key]) for key in files["each"])
    assert any(not torch.equal(files["one"][key], files["first photo"][key]) for key in files["one"])


def test_the_file_follows_the_seed_alone_and_recomputing_changes_nothing_but_the_calls(tmp_path) -> None:
    settings = LoopSettings(steps=1, grad_accumulation=1, learning_rate=1e-2, checkpoint_every=0, seed=4)
    files, attention_calls = [], []
    for name, global_seed, seed, recompute in (("a", 0, 4, None), ("b", 99, 4, True), ("c", 0, 8, None)):
        pipe = tiny_sd_pipeline()
        torch.manual_seed(global_seed)  # the LoRA's initial weights must not depend on torch's global generator
        calls = []
        attention = next(m for n, m in pipe.unet.named_modules() if n.endswith("attn2"))
        attention.register_forward_pre_hook(lambda *_: calls.append(1))
        path = tmp_path / f"{name}.safetensors"
        options = {} if recompute is None else {"recompute": recompute}  # None: the default, which is off
        train_subject_lora(
            sd_host(pipe), *photos(), "a sks dog", str(path), replace(settings, seed=seed), RECIPE, **options
        )
        files.append(load_file(path))
        attention_calls.append(len(calls))
    assert all(torch.equal(files[0][k], files[1][k]) for k in files[0])
    assert any(not torch.equal(files[0][k], files[2][k]) for k in files[0])
    assert attention_calls == [1, 2, 1]  # recomputed in the backward pass


def test_a_run_resumes_only_from_its_own_checkpoints(tmp_path) -> None:
    """Every setting and input that changes the result is part of the run's identity; the checkpoint interval is not."""
    path = tmp_path / "run.safetensors"
    settings = LoopSettings(steps=2, grad_accumulation=1, checkpoint_every=1)

    def stop_after_the_first_step() -> None:
        if (path.parent / "run.checkpoints" / "step_000001.state").exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_subject_lora(
            sd_host(), *photos(), "a sks toy", str(path), settings, RECIPE,
            check_interrupt=stop_after_the_first_step,
        )  # fmt: skip
    other_images = [image.flip(0) for image in photos()[0]]
    changes = {
        "rank": dict(recipe=replace(RECIPE, rank=2)),
        "alpha": dict(recipe=replace(RECIPE, alpha=1.0)),
        "targets": dict(recipe=replace(RECIPE, targets="attention q, k, v, out")),
        "resolution": dict(recipe=replace(RECIPE, resolution=128)),
        "copies": dict(recipe=replace(RECIPE, subject_copies=3)),
        "regular probability": dict(recipe=replace(RECIPE, regular_probability=0.5)),
        "prompt": dict(prompt="a sks dog"),
        "photos": dict(images=other_images),
        "learning rate": dict(settings=replace(settings, learning_rate=1e-3)),
    }
    refused = f"{tmp_path / 'run.checkpoints'} holds checkpoints of a different training run (other images, prompts or \
settings): use another LoRA name, or delete that folder to start over."
    for what, change in changes.items():
        with pytest.raises(DreamMixInputError) as error:
            train_subject_lora(
                sd_host(), change.get("images", photos()[0]), photos()[1], change.get("prompt", "a sks toy"),
                str(path), change.get("settings", settings), change.get("recipe", RECIPE),
            )  # fmt: skip
        assert str(error.value) == refused, what
    result = train_subject_lora(
        sd_host(), *photos(), "a sks toy", str(path), replace(settings, checkpoint_every=5), RECIPE
    )
    assert result.resumed_from == 1 and result.step == 2


def test_native_resolution_initial_lora_and_autocast(tmp_path) -> None:
    """resolution 0 trains at the family's side (SD1.5: 512, not the tiny UNet's sample size 32 × 8); no step
    leaves the initial LoRA: up 0, down ~ N(0, 1/rank²); bf16 autocast changes the arithmetic, not the result's
    scale."""
    settings = LoopSettings(steps=0, checkpoint_every=0)
    path = tmp_path / "native.safetensors"
    train_subject_lora(sd_host(), *photos(), "a sks toy", str(path), settings, LoraRecipe(subject_copies=1))
    with safe_open(path, "pt") as file:
        assert json.loads(file.metadata()["dreammix"])["resolution"] == 512
    state = load_file(path)
    downs = torch.cat([value.flatten() for key, value in state.items() if key.endswith("lora_down.weight")])
    assert all(not value.any() for key, value in state.items() if key.endswith("lora_up.weight"))
    assert downs.numel() > 5000 and abs(float(downs.std()) - 1 / 4) < 0.01 and abs(float(downs.mean())) < 0.01

    one_step = LoopSettings(steps=1, grad_accumulation=1, learning_rate=1e-2, checkpoint_every=0)
    losses = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        result = train_subject_lora(
            sd_host(dtype=dtype), *photos(), "a sks toy",
            str(tmp_path / f"{name}.safetensors"), one_step, RECIPE,
        )  # fmt: skip
        losses[name] = result.losses[0]
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_save_lora_next_to_the_working_folder_and_a_failed_write(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    record = TrainingRecord("a sks toy", 1, 4, 4.0, 0, 64, "attention k, v, out (DreamMix)", False, "SD1.5")
    pairs = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k": (torch.zeros(8, 4), torch.ones(4, 8))}
    save_lora("bare.safetensors", pairs, record)  # no folder part: written here, no folder made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.safetensors"]
    (tmp_path / "taken").write_text("a file where the LoRA's folder should be")
    target = tmp_path / "taken" / "x.safetensors"
    with pytest.raises(DreamMixInputError) as error:
        save_lora(str(target), pairs, record)
    assert re.fullmatch(
        re.escape(f"Training finished but {target} could not be written (")
        + ".+"
        + re.escape(
            f"). The trained weights are kept in {tmp_path / 'taken' / 'x.checkpoints'}: fix the cause (disk space, "
            "permissions) and run the same training again; it resumes from there and only saves."
        ),
        str(error.value),
    )


def test_the_regular_data_and_its_recipe_reach_the_unet(tmp_path) -> None:
    """regular_probability 1: every micro-step is a regular copy (the UNet only ever gets the regular prompt, as the
    pipeline encodes it); the number of regular copies changes which crops are drawn; at probability 0 the regular
    data is left out, so such a run resumes the checkpoints of the same run without regular data."""
    images, masks = photos(1)
    regular = [("a toy", images[0].flip(0), masks[0]), ("a toy", images[0].flip(1), masks[0].flip(1))]
    settings = LoopSettings(steps=4, grad_accumulation=1, learning_rate=1e-2, checkpoint_every=0, seed=3)
    pipe = tiny_sd_pipeline()
    seen = []
    pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"]), with_kwargs=True
    )
    always = replace(RECIPE, regular_probability=1.0, regular_copies=1)
    train_subject_lora(sd_host(pipe), images, masks, "a sks toy", str(tmp_path / "r.safetensors"), settings, always,
                       regular)  # fmt: skip
    with torch.no_grad():
        regular_tokens = pipe.encode_prompt("a toy", "cpu", 1, False)[0]
    assert len(seen) == 4 and all(torch.equal(tokens, regular_tokens) for tokens in seen)

    files = []
    for copies in (1, 2):
        path = tmp_path / f"copies{copies}.safetensors"
        recipe = replace(always, regular_copies=copies)
        train_subject_lora(sd_host(), images, masks, "a sks toy", str(path), settings, recipe, regular)
        files.append(load_file(path))
    assert any(not torch.equal(files[0][key], files[1][key]) for key in files[0])

    path = tmp_path / "never.safetensors"
    two_steps = replace(settings, steps=2, checkpoint_every=1)
    never = replace(RECIPE, regular_probability=0.0)

    def stop_after_the_first_step() -> None:
        if (tmp_path / "never.checkpoints" / "step_000001.state").exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_subject_lora(sd_host(), images, masks, "a sks toy", str(path), two_steps, never,
                           check_interrupt=stop_after_the_first_step)  # fmt: skip
    result = train_subject_lora(sd_host(), images, masks, "a sks toy", str(path), two_steps, never, regular)
    assert result.resumed_from == 1 and result.step == 2


def test_a_photo_with_an_alpha_channel_trains_as_its_rgb(tmp_path) -> None:
    """ComfyUI IMAGEs may carry a 4th channel: the subject photos are their RGB, in the copies and in the LoRA."""
    images, masks = photos(1)
    rgba = [torch.cat([images[0], torch.rand(*images[0].shape[:2], 1)], dim=-1)]
    copies = expand([Photo(rgba[0], masks[0], 0)], [], 64, seed=1, subject_copies=2)
    expected = expand([Photo(images[0], masks[0], 0)], [], 64, seed=1, subject_copies=2)
    assert all(torch.equal(got.image, want.image) for got, want in zip(copies, expected, strict=True))
    for name, given in (("rgb", images), ("rgba", rgba)):
        train_subject_lora(sd_host(), given, masks, "a sks toy", str(tmp_path / f"{name}.safetensors"), SETTINGS,
                           RECIPE)  # fmt: skip
    rgb, with_alpha = load_file(tmp_path / "rgb.safetensors"), load_file(tmp_path / "rgba.safetensors")
    assert all(torch.equal(rgb[key], with_alpha[key]) for key in rgb)


def test_resolution_0_is_the_familys_side_and_the_context_width_tells_sd2() -> None:
    """Resolution 0 trains at the family's side (512 for SD1.x, 1024 for SDXL), as on ComfyUI, whatever a UNet's
    sample_size says (the tiny ones say 32); an SD-latent UNet with 1024-wide cross-attention is SD2."""
    pipe = tiny_sd_pipeline()
    assert (sd_host(pipe).native_side(), sd_host(pipe).family) == (512, "SD1.5")
    sdxl = SimpleNamespace(unet=tiny_sdxl_unet(4), vae=tiny_vae(), scheduler=tiny_scheduler())
    assert (sd_host(sdxl).native_side(), sd_host(sdxl).family) == (1024, "SDXL")
    pipe.unet.register_to_config(cross_attention_dim=1024)
    assert sd_host(pipe).family == "SD2"
