"""The refusals of dreammix_core that the method tests do not reach, each with the whole text the user reads.

Every message is written out by hand: a test that matched a phrase would pass a message gone wrong around it.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from diffusers import DDPMScheduler
from PIL import Image
from tiny_metric_models import save_tiny_metric_models
from tiny_models import prompt, tiny_sd_pipeline, tiny_sdxl_unet, tiny_vae
from tiny_vlm import save_tiny_vlm

from dreammix_core import model_source
from dreammix_core.attributes.vlm import load_vlm
from dreammix_core.errors import DreamMixInputError
from dreammix_core.evaluation import metrics
from dreammix_core.inpainting.diffusers_backend import DiffusersBackend
from dreammix_core.inpainting.region import compute_region
from dreammix_core.training.data import Photo, expand
from dreammix_core.training.diffusers_training import DiffusersTrainingHost
from dreammix_core.training.loop import LoopSettings
from dreammix_core.training.mask_augment import bezier_blob
from dreammix_core.training.subject_lora import LoraRecipe, train_subject_lora


def refusal(call, *args, error=DreamMixInputError, **kwargs) -> str:
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    return str(caught.value)


@pytest.fixture(scope="module")
def metric_folders(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_metric_models(tmp_path_factory.mktemp("metric_models"))


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory) -> Path:
    return save_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


# --- metrics ---------------------------------------------------------------------------------


def test_clip_t_refuses_a_class_word_with_the_identifier() -> None:
    assert (
        refusal(metrics.clip_t_text, "a sks dog", "sks dog") == "The class word must not contain the identifier 'sks'."
    )


def test_a_mask_stack_is_not_one_mask() -> None:
    message = refusal(metrics.subject_box, np.ones((2, 8, 8)))
    assert message == "The mask must be one HxW mask; got an array of shape (2, 8, 8)."


def test_metric_kinds_are_clip_and_dino() -> None:
    assert refusal(metrics.load_metric_model, "blip", error=ValueError) == "kind must be 'clip' or 'dino', not 'blip'"


def test_a_dino_folder_given_as_clip_says_so_once(metric_folders) -> None:
    dino = str(metric_folders[1])
    assert refusal(metrics.load_metric_model, "clip", dino) == (
        f"'{dino}' is a vit model, not a CLIP model with image and text towers (e.g. 'openai/clip-vit-large-patch14')."
    )


def test_a_model_with_both_towers_but_no_clip_features_is_refused(vlm_folder) -> None:
    """A LLaVA config has text and vision configs, as CLIP's; the loaded model has no CLIP feature heads."""
    assert refusal(metrics.load_metric_model, "clip", str(vlm_folder)) == (
        f"'{vlm_folder}' is a LlavaModel, not a CLIP model with image and text towers "
        "(e.g. 'openai/clip-vit-large-patch14')."
    )


def test_embedding_refusals(metric_folders) -> None:
    clip = metrics.cached_metric_model("clip", str(metric_folders[0]))
    dino = metrics.cached_metric_model("dino", str(metric_folders[1]))
    assert refusal(metrics.image_embeddings, clip, []) == "No images to embed."
    assert refusal(metrics.text_embeddings, dino, ["a dog"], error=ValueError) == "text embeddings need the CLIP model"
    subject = Image.new("RGB", (32, 32))
    assert refusal(metrics.identity_similarity, dino, subject, []) == (
        "Give at least one reference photo of the subject for CLIP-I and DINO."
    )


def test_a_download_that_fails_says_it_could_not_be_downloaded(monkeypatch) -> None:
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    message = refusal(model_source.local_model_folder, "owner/none", "CLIP model", "owner/example", True)
    assert message == (
        "The CLIP model 'owner/none' could not be downloaded. Download it first (e.g. `hf download owner/none`) "
        "or give the local folder that holds its files. (ConnectionError: no network)"
    )


# --- the VLM ---------------------------------------------------------------------------------


def test_vlm_folder_without_processor(vlm_folder, tmp_path) -> None:
    shutil.copy(vlm_folder / "config.json", tmp_path / "config.json")
    message = refusal(load_vlm, str(tmp_path))
    assert re.fullmatch(re.escape(f"Could not load the VLM's processor from '{tmp_path}': ") + ".+", message, re.S)


def test_vlm_folder_without_weights(vlm_folder, tmp_path) -> None:
    folder = Path(shutil.copytree(vlm_folder, tmp_path / "vlm"))
    (folder / "model.safetensors").unlink()
    message = refusal(load_vlm, str(folder))
    assert re.fullmatch(re.escape(f"Could not load the VLM's weights from '{folder}': ") + ".+", message, re.S)


def test_a_clip_folder_is_not_a_vlm(metric_folders) -> None:
    clip = str(metric_folders[0])
    message = refusal(load_vlm, clip)
    prefix = f"'{clip}' is not a vision-language model transformers can load for image-text generation. "
    assert message.startswith(prefix)
    # every auto class this transformers has was tried, in this order, each with its own reason
    names = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")
    tried = [name for name in names if hasattr(transformers, name)]
    reasons = message.removeprefix(prefix).split(" | ")
    assert [reason.split(": ", 1)[0] for reason in reasons] == tried


# --- geometry, data, backends ----------------------------------------------------------------


def test_region_settings_and_empty_mask() -> None:
    mask = torch.zeros(1, 64, 64)
    mask[:, 20:40, 20:40] = 1
    assert refusal(compute_region, mask, context_factor=1.5) == "context factor must be between 0 and 1, got 1.5."
    assert refusal(compute_region, mask, resolution=32) == "working resolution 32 is below the size multiple 64."
    assert refusal(compute_region, torch.zeros(1, 64, 64)) == (
        "The mask is empty: paint the area where the subject should go (values of 0.5 or more count as masked). "
        "Load Image gives an empty mask when the image has no alpha channel: paint one in the mask editor or use "
        "Load Image (as Mask)."
    )


def test_training_data_refusals() -> None:
    grey = Photo(torch.rand(64, 64), torch.ones(64, 64), 0)
    assert refusal(expand, [grey], [], 64, 0) == "subject photo 1: expected one RGB image, got shape (64, 64)."
    assert refusal(expand, [], [], 64, 0) == "Give at least one subject photo with its mask."
    assert refusal(bezier_blob, torch.ones(1, 8, 8), torch.Generator()) == (
        "A subject mask must be one 2-D mask, got shape (1, 8, 8)."
    )


def test_the_backend_needs_an_euler_family_scheduler() -> None:
    message = refusal(
        DiffusersBackend, tiny_sdxl_unet(4), tiny_vae(), DDPMScheduler(), prompt(0), prompt(1), error=TypeError
    )
    assert message == "DDPMScheduler lacks `sigmas`: use an Euler-family scheduler."


def test_a_lora_file_that_appears_while_training_is_kept(tmp_path) -> None:
    path = tmp_path / "subject.safetensors"
    image, mask = torch.rand(64, 64, 3), torch.zeros(64, 64)
    mask[16:48, 16:48] = 1
    settings = LoopSettings(steps=1, grad_accumulation=1, checkpoint_every=0)
    message = refusal(
        train_subject_lora, DiffusersTrainingHost(tiny_sd_pipeline()), [image], [mask], "a sks toy", str(path),
        settings, LoraRecipe(resolution=64, subject_copies=1), on_step=lambda *_: path.write_bytes(b"someone else's"),
    )  # fmt: skip
    assert message == (
        f"subject.safetensors appeared while training; the trained weights stay in {tmp_path / 'subject.checkpoints'}."
    )
    assert path.read_bytes() == b"someone else's"
    assert (tmp_path / "subject.checkpoints" / "step_000001.state").is_file()
