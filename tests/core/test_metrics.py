"""The paper's metrics on tiny random-weight CLIP and DINO models, and the batch command's checks (no server)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_comfy import FakeComfy
from PIL import Image
from tiny_metric_models import CLIPImageProcessorPil, ViTImageProcessorPil, save_tiny_metric_models

import dreammix_batch as batch
from dreammix_core.errors import DreamMixInputError
from dreammix_core.evaluation import metrics
from dreammix_core.evaluation.metrics import (
    Scores,
    clip_t,
    clip_t_text,
    cosine,
    identity_similarity,
    image_embeddings,
    score,
    subject_box,
    subject_crop,
    text_embeddings,
)
from dreammix_core.model_cache import ModelCache

API_WORKFLOWS = Path(__file__).resolve().parents[2] / "dreammix_batch" / "workflows"
UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing answers; the checks must fail before any request


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_metric_models(tmp_path_factory.mktemp("metric_models"))


@pytest.fixture(scope="module")
def models(folders):
    return metrics.cached_metric_model("clip", str(folders[0])), metrics.cached_metric_model("dino", str(folders[1]))


def noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 1.0
    return mask


# --- text and region -------------------------------------------------------------------------------


def test_clip_t_text_replaces_the_identifier_by_the_class_word():
    assert clip_t_text("a photo of a sks backpack on the grass", "backpack") == "a photo of a backpack on the grass"
    assert clip_t_text("a red SKS   backpack", "backpack") == "a red backpack"
    assert clip_t_text("sks on the beach", "dog") == "dog on the beach"
    assert clip_t_text("a dog on the beach", "") == "a dog on the beach"
    assert clip_t_text("a photo of a sksx backpack", "dog") == "a photo of a sksx backpack"  # whole words only


@pytest.mark.parametrize(
    ("prompt", "word", "says"),
    [
        ("  ", "dog", "The prompt is empty: CLIP-T needs the prompt the image was generated from."),
        (
            "a sks dog",
            "",
            "The prompt 'a sks dog' contains the identifier 'sks': give the class word ('dog', 'backpack') that "
            "replaces it for CLIP-T.",
        ),
    ],
)
def test_clip_t_text_refuses(prompt, word, says):
    with pytest.raises(DreamMixInputError, match="^" + re.escape(says) + "$"):
        clip_t_text(prompt, word)


def test_identity_crop_is_the_mask_bounding_box():
    image = noise(80, 60, 0)
    mask = np.zeros((60, 80), np.float32)
    mask[10:20, 30:35] = 1.0
    mask[25, 50] = 0.6  # grey at or above 0.5 counts, as in the inpainting nodes
    mask[55, 5] = 0.4  # below 0.5 does not
    assert subject_box(mask) == (30, 10, 51, 26)
    crop = subject_crop(image, mask)
    assert crop.size == (21, 16)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[10:26, 30:51])
    as_pil = Image.fromarray((mask * 255).astype(np.uint8))
    assert subject_box(as_pil) == subject_box(mask) == subject_box(torch.from_numpy(mask)[None])


def test_identity_crop_refuses_empty_and_mismatched_masks():
    empty = "The mask is empty (no value of 0.5 or more): the identity metrics need the subject's region."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(empty) + "$"):
        subject_box(np.zeros((8, 8)))
    mismatched = "The mask is 8x6 but the image is 80x60: give the mask the image was inpainted with."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(mismatched) + "$"):
        subject_crop(noise(80, 60, 0), np.ones((6, 8)))


# --- the models -------------------------------------------------------------------------------------


def test_models_load_once_from_folders(folders, models):
    clip, dino = models
    assert metrics.cached_metric_model("clip", str(folders[0])) is clip
    assert not clip.model.training and not dino.model.training
    # the PIL processors: no torchvision needed
    assert type(clip.image_processor) is CLIPImageProcessorPil and type(dino.image_processor) is ViTImageProcessorPil
    ids = clip.tokenizer(["a dog"])["input_ids"][0]
    assert ids[-1] == clip.tokenizer.eos_token_id  # CLIP's text tower pools at the end token


def test_loading_never_waits_on_the_network(tmp_path, folders):
    with pytest.raises(DreamMixInputError) as not_cached:
        metrics.load_metric_model("clip", "dreammix-tests/no-such-clip")
    not_cached_says = (
        "The CLIP model 'dreammix-tests/no-such-clip' is not in the local Hugging Face cache. Download it first "
        "(e.g. `hf download dreammix-tests/no-such-clip`) or give the local folder that holds its files."
    )
    # the parenthesis holds huggingface_hub's own error, type and text
    assert re.fullmatch(re.escape(not_cached_says) + r" \(.+\)", str(not_cached.value), re.DOTALL)
    missing = (
        f"The DINO model folder '{tmp_path / 'missing'}' does not exist. Give the folder that holds the model's "
        "config.json, or a Hugging Face id such as 'facebook/dino-vits16'."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(missing) + "$"):
        metrics.load_metric_model("dino", str(tmp_path / "missing"))
    no_config = (
        f"The CLIP model folder '{tmp_path}' has no model in it (no config.json). Put all files of the model there, "
        "e.g. those of 'openai/clip-vit-large-patch14'."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(no_config) + "$"):
        metrics.load_metric_model("clip", str(tmp_path))
    not_clip = (
        f"'{folders[1]}' is a vit model, not a CLIP model with image and text towers "
        "(e.g. 'openai/clip-vit-large-patch14')."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(not_clip) + "$"):
        metrics.load_metric_model("clip", str(folders[1]))


def test_identical_images_score_one(models):
    clip, dino = models
    image = noise(64, 48, 1)
    assert identity_similarity(clip, image, [image]) == pytest.approx(1.0, abs=1e-5)
    assert identity_similarity(dino, image, [image]) == pytest.approx(1.0, abs=1e-5)
    box = (16, 8, 48, 40)
    result = score(image, box_mask(64, 48, box), [image.crop(box)], "a dog", clip=clip, dino=dino)
    assert result.clip_i == pytest.approx(1.0, abs=1e-5)
    assert result.dino == pytest.approx(1.0, abs=1e-5)


def test_scores_are_symmetric_and_raw_cosines(models):
    clip, dino = models
    a, b, c = noise(40, 40, 2), Image.linear_gradient("L").resize((40, 40)).convert("RGB"), noise(40, 40, 3)
    for loaded in models:
        ab, ba = identity_similarity(loaded, a, [b]), identity_similarity(loaded, b, [a])
        assert ab == pytest.approx(ba, abs=1e-6)
        assert -1.0 <= ab <= 1.0 and ab < 0.9999
        # CLIP-I / DINO average over the references
        both = identity_similarity(loaded, a, [b, c])
        assert both == pytest.approx((ab + identity_similarity(loaded, a, [c])) / 2, abs=1e-6)
    x, y = torch.randn(3, 5), torch.randn(2, 5)
    assert torch.allclose(cosine(x, y), cosine(y, x).T)
    expected = torch.nn.functional.cosine_similarity(image_embeddings(clip, [a]), text_embeddings(clip, ["a dog"]))
    assert clip_t(clip, a, "a dog") == pytest.approx(float(expected), abs=1e-6)


def test_clip_t_scores_the_prompt_without_the_identifier(models):
    clip, _ = models
    image = noise(48, 48, 4)
    with_identifier = clip_t(clip, image, "a photo of a sks backpack on the grass", "backpack")
    assert with_identifier == pytest.approx(clip_t(clip, image, "a photo of a backpack on the grass"), abs=1e-6)
    raw = cosine(image_embeddings(clip, [image]), text_embeddings(clip, ["a photo of a sks backpack on the grass"]))
    assert with_identifier != pytest.approx(float(raw[0, 0]), abs=1e-4)  # the tiny vocabulary knows 'sks'


def test_whole_scoring_path(models):
    clip, dino = models
    scene = noise(96, 64, 5)
    mask = box_mask(96, 64, (40, 10, 80, 50))
    references = [noise(50, 70, 6), scene.crop((40, 10, 80, 50))]
    result = score(scene, mask, references, "a sks dog on the grass", "dog", clip=clip, dino=dino)
    assert all(isinstance(v, float) for v in (result.clip_t, result.clip_i, result.dino))
    subject = scene.crop((40, 10, 80, 50))
    assert result.clip_i == pytest.approx(identity_similarity(clip, subject, references), abs=1e-6)
    assert result.dino == pytest.approx(identity_similarity(dino, subject, references), abs=1e-6)
    assert result.line().startswith("CLIP-T ")
    only_clip = score(scene, mask, [], "a sks dog", "dog", clip=clip)
    assert only_clip.clip_i is None and only_clip.dino is None and only_clip.clip_t is not None
    assert Scores(None, 0.5, None).line() == "CLIP-T — | CLIP-I 0.500 | DINO —"


def test_dino_embeds_the_class_token_of_the_last_layer(models, folders):
    """Recomputed with transformers alone: the processor and ViT of the folder, token 0 of the last hidden state."""
    import transformers

    _, dino = models
    image = noise(40, 30, 8)
    pixels = ViTImageProcessorPil.from_pretrained(str(folders[1]))(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = transformers.ViTModel.from_pretrained(str(folders[1]), add_pooling_layer=False)(
            pixels
        ).last_hidden_state
    embedded = image_embeddings(dino, [image])
    assert torch.allclose(embedded, hidden[:, 0], atol=1e-5)
    assert not torch.allclose(embedded, hidden[:, 1:].mean(1), atol=1e-3)


def test_cosine_on_hand_checked_vectors():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0], [0.0, 2.0], [-3.0, -4.0]])
    assert torch.allclose(cosine(a, b), torch.tensor([[24 / 25, 4 / 5, -1.0]]))


def test_clip_t_of_score_uses_the_prompt_with_the_class_word(models):
    clip, dino = models
    scene = noise(64, 64, 9)
    result = score(scene, box_mask(64, 64, (8, 8, 40, 40)), [scene], "a sks dog on the grass", "dog", clip=clip)
    by_hand = cosine(image_embeddings(clip, [scene]), text_embeddings(clip, ["a dog on the grass"]))
    assert result.clip_t == pytest.approx(float(by_hand[0, 0]), abs=1e-6)
    only_dino = score(scene, box_mask(64, 64, (8, 8, 40, 40)), [scene], "a sks dog", "dog", dino=dino)
    assert only_dino.clip_t is None and only_dino.clip_i is None and isinstance(only_dino.dino, float)


def test_mean_scores_average_each_metric_over_the_images_that_have_it():
    from dreammix_core.evaluation.metrics import mean_scores

    means = mean_scores([Scores(0.1, None, 0.3), Scores(0.3, 0.5, None), Scores(0.8, 0.7, 0.9)])
    assert (means.clip_t, means.clip_i, means.dino) == pytest.approx((0.4, 0.6, 0.6))
    assert mean_scores([Scores(None, None, None)]) == Scores(None, None, None)


def test_prompts_longer_than_the_text_tower_are_truncated_as_clip_does(models):
    """The tiny CLIP reads 16 positions: a 40-word prompt scores as its first 14 words (plus start and end)."""
    clip, _ = models
    words = " ".join(["dog", "grass", "photo", "red"] * 10)
    long, cut = text_embeddings(clip, [words, " ".join(words.split()[:14])])
    assert torch.allclose(long, cut, atol=1e-5)


# --- the batch command, without a server -------------------------------------------------------------


def write_case(root: Path, name: str, size=(64, 48), mask_size=None, prompt="a photo of a sks dog", refs=0) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    noise(*size, hash(name) % 100).save(folder / "scene.png")
    width, height = mask_size or size
    Image.fromarray((box_mask(width, height, (8, 8, 40, 32)) * 255).astype(np.uint8)).save(folder / "mask.png")
    (folder / "prompt.txt").write_text(prompt)
    for index in range(refs):
        (folder / "references").mkdir(exist_ok=True)
        noise(40, 40, 50 + index).save(folder / "references" / f"ref{index}.png")
    return folder


def test_cases_load_with_their_references(tmp_path):
    write_case(tmp_path / "cases", "a", refs=2)
    write_case(tmp_path / "cases", "b")
    shared = tmp_path / "refs"
    shared.mkdir()
    noise(30, 30, 9).save(shared / "r.jpg")
    a, b = batch.load_cases(tmp_path / "cases", shared, "dog")
    assert [p.name for p in a.references] == ["ref0.png", "ref1.png"] and a.class_word == "dog"
    assert [p.name for p in b.references] == ["r.jpg"]
    assert b.prompt == "a photo of a sks dog"


def test_malformed_case_folders_name_the_file(tmp_path):
    cases = tmp_path / "cases"
    write_case(cases, "good")
    (write_case(cases, "no_mask") / "mask.png").unlink()
    write_case(cases, "wrong_size", mask_size=(48, 64))
    write_case(cases, "empty_prompt", prompt="  \n")
    with pytest.raises(DreamMixInputError) as caught:
        batch.load_cases(cases)
    empty_prompt = f"{cases / 'empty_prompt' / 'prompt.txt'}: is empty; write the prompt for this case in it"
    no_mask = f"{cases / 'no_mask' / 'mask.png'}: missing"
    wrong_size = (
        f"{cases / 'wrong_size' / 'mask.png'}: is 48x64 but scene.png is 64x48; the mask must have the scene's size"
    )
    # one line per problem, in the folders' order; the good case is not named
    assert str(caught.value) == f"Malformed case folders:\n  {empty_prompt}\n  {no_mask}\n  {wrong_size}"
    (write_case(cases, "scene_folder") / "scene.png").unlink()
    (cases / "scene_folder" / "scene.png").mkdir()
    scene_folder = f"{cases / 'scene_folder' / 'scene.png'}: is a folder, not an image"
    expected = f"Malformed case folders:\n  {empty_prompt}\n  {no_mask}\n  {scene_folder}\n  {wrong_size}"
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        batch.load_cases(cases)


def test_out_naming_a_file_is_refused(tmp_path, capsys):
    write_case(tmp_path / "cases", "c1")
    (tmp_path / "out").write_text("a file")
    args = [str(tmp_path / "cases"), "--out", str(tmp_path / "out"), "--server", UNREACHABLE, "--class-word", "dog"]
    assert batch.main(args) == 2
    assert f"--out {tmp_path / 'out'} is a file" in capsys.readouterr().err


def test_command_refuses_bad_cases_before_contacting_a_server(tmp_path, capsys):
    cases = tmp_path / "cases"
    (write_case(cases, "c1") / "prompt.txt").unlink()
    code = batch.main([str(cases), "--out", str(tmp_path / "out"), "--server", UNREACHABLE])
    assert code == 2
    assert f"{cases / 'c1' / 'prompt.txt'}: missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--seeds", "1,x"], "--seeds takes whole numbers"),
        (["--limit", "0"], "--limit must be 1 or more"),
        (["--lora-model-only"], "--lora-model-only needs --lora"),
        (
            ["--workflow", str(API_WORKFLOWS.parents[1] / "example_workflows" / "dreammix_inpaint.json")],
            "not an API-format workflow",
        ),
        ([], "contains the identifier 'sks'"),  # CLIP-T needs the class word
        (["--server", "http://127.0.0.1:port"], "--server 'http://127.0.0.1:port' is not a server address"),
        (["--comfyui", "/nowhere"], "Give --server (running ComfyUI servers) or --comfyui"),
    ],
)
def test_command_arguments_are_checked(tmp_path, capsys, extra, says):
    write_case(tmp_path / "cases", "c1")
    assert batch.main([str(tmp_path / "cases"), "--out", str(tmp_path / "out"), "--server", UNREACHABLE, *extra]) == 2
    assert says in capsys.readouterr().err


def test_scene_upload_carries_the_mask_as_inverted_alpha(tmp_path):
    (case,) = batch.load_cases(write_case(tmp_path / "cases", "c").parent)
    with Image.open(__import__("io").BytesIO(batch.scene_with_alpha(case))) as png:
        rgba = np.asarray(png)
    with Image.open(case.mask) as mask, Image.open(case.scene) as scene:
        assert np.array_equal(rgba[..., 3], 255 - np.asarray(mask.convert("L")))
        assert np.array_equal(rgba[..., :3], np.asarray(scene.convert("RGB")))


def test_graph_roles_seed_prompt_ckpt_and_lora():
    template = batch.load_workflow(API_WORKFLOWS / "dreammix_inpaint.json")
    options = batch.Options(ckpt="tiny.safetensors", lora="subject.safetensors", lora_strength=0.8, steps=4)
    graph = batch.prepare_graph(template, "scene.png", "a sks dog", 7, "out/c", options)
    roles = batch.find_roles(graph)
    inpaint = graph[roles.inpaint]["inputs"]
    assert inpaint["seed"] == 7 and inpaint["steps"] == 4
    assert graph[roles.prompt]["inputs"]["text"] == "a sks dog"
    assert graph[roles.scene]["inputs"]["image"] == "scene.png"
    assert graph[roles.save]["inputs"]["filename_prefix"] == "out/c"
    assert graph[roles.checkpoint]["inputs"]["ckpt_name"] == "tiny.safetensors"
    (lora_id,) = [nid for nid, node in graph.items() if node["class_type"] == "LoraLoader"]
    assert graph[lora_id]["inputs"] == {
        "model": [roles.checkpoint, 0],
        "clip": [roles.checkpoint, 1],
        "lora_name": "subject.safetensors",
        "strength_model": 0.8,
        "strength_clip": 0.8,
    }
    assert inpaint["model"] == [lora_id, 0] and inpaint["vae"] == [roles.checkpoint, 2]
    assert all(
        node["inputs"]["clip"] == [lora_id, 1] for node in graph.values() if node["class_type"] == "CLIPTextEncode"
    )
    model_only = batch.prepare_graph(
        template, "s.png", "p", 0, "x", batch.Options(lora="s.safetensors", lora_model_only=True)
    )
    (lora_id,) = [nid for nid, node in model_only.items() if node["class_type"] == "LoraLoaderModelOnly"]
    assert batch.find_roles(model_only).inpaint in {
        nid for nid, n in model_only.items() if n["inputs"].get("model") == [lora_id, 0]
    }
    assert all(n["inputs"]["clip"][0] != lora_id for n in model_only.values() if n["class_type"] == "CLIPTextEncode")
    assert template == batch.load_workflow(API_WORKFLOWS / "dreammix_inpaint.json")  # the template is untouched


def test_finished_cases_are_skipped_without_a_server(tmp_path):
    cases = batch.load_cases(write_case(tmp_path / "cases", "c").parent)
    target = batch.image_path(tmp_path / "out", cases[0], 3)
    target.parent.mkdir(parents=True)
    noise(64, 48, 0).save(target)
    template = json.loads((API_WORKFLOWS / "dreammix_inpaint.json").read_text())
    report = batch.run_cases(cases, [3], tmp_path / "out", [UNREACHABLE], template)
    assert report.skipped == ["c"] and not report.ran and not report.failed


def test_results_table_from_finished_images(tmp_path, folders):
    cases = batch.load_cases(write_case(tmp_path / "cases", "c1", refs=2).parent, class_word="dog")
    write_case(tmp_path / "cases", "c2")  # no references: identity columns empty for it
    cases = batch.load_cases(tmp_path / "cases", class_word="dog")
    out = tmp_path / "out"
    for case in cases:
        for seed in (0, 1):
            batch.image_path(out, case, seed).parent.mkdir(parents=True, exist_ok=True)
            noise(64, 48, seed).save(batch.image_path(out, case, seed))
    table, per_image = batch.score_cases(cases, [0, 1], out, str(folders[0]), str(folders[1]))
    assert [(name, count) for name, count, _ in table.rows] == [("c1", 2), ("c2", 2)]
    c1, c2 = table.rows[0][2], table.rows[1][2]
    assert c1.clip_i is not None and c2.clip_i is None and c2.clip_t is not None
    assert table.mean.clip_t == pytest.approx((c1.clip_t + c2.clip_t) / 2)
    assert len(per_image) == 4 and any("need reference photos" in note for note in table.notes)
    batch.write_results(out, table, per_image)
    rows = list(csv.reader(open(out / "results.csv")))
    assert rows[0] == ["case", "images", "CLIP-T", "CLIP-I", "DINO"] and rows[-1][0] == "mean"
    assert rows[2][3] == "" and rows[1][3] != ""
    assert "| **mean** | 4 |" in (out / "results.md").read_text()


def test_results_table_without_models_has_empty_columns_and_a_note(tmp_path):
    cases = batch.load_cases(write_case(tmp_path / "cases", "c1").parent, class_word="dog")
    table, _ = batch.score_cases(cases, [0], tmp_path / "out", "dreammix-tests/no-such-clip", str(tmp_path / "nodino"))
    markdown = batch.table_markdown(table)
    assert "| c1 | 0 |  |  |  |" in markdown
    assert "CLIP-T and CLIP-I: not computed" in markdown and "DINO: not computed" in markdown


@pytest.fixture
def fake_servers():
    servers = [FakeComfy(), FakeComfy()]
    yield servers
    for server in servers:
        server.close()


def test_cases_spread_over_servers_and_resume(tmp_path, fake_servers):
    for index in range(4):
        write_case(tmp_path / "cases", f"c{index}", prompt=f"a photo of a sks dog {index}")
    cases = batch.load_cases(tmp_path / "cases")
    template = batch.load_workflow(API_WORKFLOWS / "dreammix_inpaint.json")
    urls = [server.url for server in fake_servers]
    first = batch.run_cases(cases, [0, 1], tmp_path / "out", urls, template, limit=3)
    assert sorted(first.ran) == ["c0", "c1", "c2"] and not first.failed
    second = batch.run_cases(cases, [0, 1], tmp_path / "out", urls, template)
    assert second.ran == ["c3"] and second.skipped == ["c0", "c1", "c2"]
    prompts = [graph for server in fake_servers for graph in server.prompts]
    assert len(prompts) == 8  # 4 cases x 2 seeds, none run twice
    seen = {
        (g[batch.find_roles(g).prompt]["inputs"]["text"], g[batch.find_roles(g).inpaint]["inputs"]["seed"])
        for g in prompts
    }
    assert seen == {(f"a photo of a sks dog {i}", seed) for i in range(4) for seed in (0, 1)}
    for case in cases:
        for seed in (0, 1):
            assert batch.image_path(tmp_path / "out", case, seed).is_file()
    uploads = [name for server in fake_servers for name in server.uploads]
    assert sorted(uploads) == [f"dreammix_batch_c{i}.png" for i in range(4)]


def test_a_failing_case_is_reported_and_the_others_go_on(tmp_path, fake_servers, capsys):
    write_case(tmp_path / "cases", "c0")
    fake_servers[0].fail = True
    code = batch.main(
        [str(tmp_path / "cases"), "--out", str(tmp_path / "out"), "--server", fake_servers[0].url, "--no-metrics"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "case c0 failed: node 5 (DreamMixInpaint) failed" in err and "The mask is empty" in err
    assert "| c0 | 0 |  |  |  |" in (tmp_path / "out" / "results.md").read_text()


def test_an_unreachable_server_is_named(tmp_path, capsys):
    write_case(tmp_path / "cases", "c0")
    assert (
        batch.main([str(tmp_path / "cases"), "--out", str(tmp_path / "o"), "--server", UNREACHABLE, "--no-metrics"])
        == 1
    )
    assert f"No ComfyUI server answers at {UNREACHABLE}" in capsys.readouterr().err


def test_score_line_shows_each_metric_in_its_place() -> None:
    assert metrics.Scores(0.1234, None, 0.5).line() == "CLIP-T 0.123 | CLIP-I — | DINO 0.500"
    assert metrics.Scores(None, 0.25, None).line() == "CLIP-T — | CLIP-I 0.250 | DINO —"


def test_texts_of_different_lengths_embed_as_they_do_alone(models) -> None:
    clip, _ = models
    texts = ["a dog", "a photo of a red dog on the grass"]
    together = metrics.text_embeddings(clip, texts)
    alone = torch.cat([metrics.text_embeddings(clip, [text]) for text in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_the_model_cache_keeps_the_four_last_used_and_keys_by_dtype(folders, monkeypatch) -> None:
    monkeypatch.setattr(metrics, "_CACHE", ModelCache(size=4))
    clip = str(folders[0])
    dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
    loaded = [metrics.cached_metric_model("clip", clip, dtype=dtype) for dtype in dtypes]
    assert [model.model.dtype for model in loaded] == list(dtypes)
    assert metrics.cached_metric_model("clip", clip, dtype=torch.float64) is loaded[1]  # reused, now the latest
    dino = metrics.cached_metric_model("dino", str(folders[1]))
    assert list(metrics._CACHE.values()) == [loaded[2], loaded[3], loaded[1], dino]  # the least recent one went


@pytest.mark.parametrize(
    ("version", "options"),
    [("4.57.1", {"use_fast": False}), ("5.0.0", {"backend": "pil"}), ("5.25.0", {"backend": "pil"})],
)
def test_the_pil_image_processor_is_asked_for_in_each_majors_way(monkeypatch, version, options) -> None:
    """transformers 4 picks the PIL ('slow') processor with use_fast=False, transformers 5 with backend='pil'."""
    from types import SimpleNamespace

    asked = []
    fake = SimpleNamespace(from_pretrained=lambda folder, **kwargs: asked.append((folder, kwargs)) or "processor")
    monkeypatch.setattr(metrics.transformers, "__version__", version)
    monkeypatch.setattr(metrics.transformers, "AutoImageProcessor", fake)
    assert metrics._pil_image_processor("/models/clip") == "processor"
    assert asked == [("/models/clip", options)]


def test_load_metric_model_falls_back_to_the_default_and_passes_allow_download(monkeypatch) -> None:
    """No source: the kind's default id is looked up, under the caller's allow_download."""
    seen = []

    def lookup(source, what, example, allow_download):
        seen.append((source, what, example, allow_download))
        raise DreamMixInputError("stop")

    monkeypatch.setattr(metrics, "local_model_folder", lookup)
    for kind, allow in (("clip", True), ("dino", False)):
        with pytest.raises(DreamMixInputError, match="^stop$"):
            metrics.load_metric_model(kind, None, allow_download=allow)
    assert seen == [
        ("openai/clip-vit-large-patch14", "CLIP model", "openai/clip-vit-large-patch14", True),
        ("facebook/dino-vits16", "DINO model", "facebook/dino-vits16", False),
    ]


def test_load_metric_model_says_what_it_loaded_and_where(folders) -> None:
    """Kind and source are kept; the model is on the CPU unless a device is given (meta: moved, no memory)."""
    for kind, folder in zip(("clip", "dino"), folders):
        loaded = metrics.load_metric_model(kind, str(folder))
        assert (loaded.kind, loaded.source) == (kind, str(folder))
        assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    on_meta = metrics.load_metric_model("dino", str(folders[1]), device="meta")
    assert {p.device.type for p in on_meta.model.parameters()} == {"meta"}


def test_cached_metric_model_keys_by_device_defaults_and_passes_allow_download(monkeypatch) -> None:
    """No source and the default id are one entry; another device is another; device and allow_download (off
    unless asked) reach the loader."""
    monkeypatch.setattr(metrics, "_CACHE", ModelCache(size=4))
    loads = []

    def load(kind, source, *, device, dtype, allow_download):
        loads.append((kind, source, str(device), allow_download))
        return object()

    monkeypatch.setattr(metrics, "load_metric_model", load)
    first = metrics.cached_metric_model("clip")
    assert metrics.cached_metric_model("clip", "openai/clip-vit-large-patch14") is first
    assert metrics.cached_metric_model("clip", device="meta") is not first
    metrics.cached_metric_model("dino", allow_download=True)
    assert loads == [
        ("clip", "openai/clip-vit-large-patch14", "cpu", False),
        ("clip", "openai/clip-vit-large-patch14", "meta", False),
        ("dino", "facebook/dino-vits16", "cpu", True),
    ]


def test_a_config_without_both_towers_is_not_clip(tmp_path) -> None:
    """SAM has a vision config but no text config: refused as CLIP before anything else is loaded."""
    import transformers

    transformers.SamConfig().save_pretrained(tmp_path)
    says = (
        f"'{tmp_path}' is a sam model, not a CLIP model with image and text towers "
        "(e.g. 'openai/clip-vit-large-patch14')."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(says) + "$"):
        metrics.load_metric_model("clip", str(tmp_path))


def test_a_dinov2_model_loads_as_dino_and_embeds_its_class_token(tmp_path) -> None:
    """DINOv2 has no pooling-layer option (only ViT's DINO gets add_pooling_layer=False); its embedding is token 0
    of the last hidden state, recomputed with transformers alone."""
    import transformers

    config = transformers.Dinov2Config(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    transformers.Dinov2Model(config).save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    dino = metrics.load_metric_model("dino", str(tmp_path))
    image = noise(40, 30, 12)
    pixels = ViTImageProcessorPil.from_pretrained(str(tmp_path))(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = transformers.Dinov2Model.from_pretrained(str(tmp_path))(pixels).last_hidden_state
    assert torch.allclose(image_embeddings(dino, [image]), hidden[:, 0], atol=1e-5)


def test_unloadable_weights_name_the_model_and_the_error(folders, tmp_path) -> None:
    """A DINO folder whose weight file is missing: the error says which model and where, then transformers' error."""
    import shutil

    folder = tmp_path / "dino"
    shutil.copytree(folders[1], folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(DreamMixInputError) as error:
        metrics.load_metric_model("dino", str(folder))
    assert re.fullmatch(re.escape(f"Could not load the DINO model from '{folder}': ") + r".+", str(error.value), re.S)


def test_masks_as_rgb_images_and_as_tensors_in_a_graph_give_the_box() -> None:
    """A mask saved as an RGB picture counts its white pixels; a tensor that requires grad is read as it is."""
    mask = box_mask(40, 30, (5, 7, 25, 20))
    rgb = Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB")
    assert subject_box(rgb) == (5, 7, 25, 20)
    assert subject_box(torch.from_numpy(mask).requires_grad_()) == (5, 7, 25, 20)


def test_the_subject_crop_is_rgb() -> None:
    image = Image.new("RGBA", (20, 10), (10, 20, 30, 40))
    crop = subject_crop(image, box_mask(20, 10, (2, 3, 8, 9)))
    assert crop.mode == "RGB" and crop.size == (6, 6) and crop.getpixel((0, 0)) == (10, 20, 30)


def test_features_given_as_a_tensor_are_used_as_they_are() -> None:
    """transformers 4 returns the projected features as a tensor: taken as is."""
    features = torch.randn(2, 16)
    assert metrics._features(features) is features


def test_grey_images_embed_as_their_rgb_and_a_float64_model_as_float32(models, folders) -> None:
    """A greyscale photo is embedded as its RGB conversion (the ViT processor expects three channels), and a model
    loaded in float64 gets float64 pixels and gives the float32 model's embedding."""
    _, dino = models
    grey = Image.linear_gradient("L").resize((40, 30))
    torch.testing.assert_close(image_embeddings(dino, [grey]), image_embeddings(dino, [grey.convert("RGB")]))
    wide = metrics.load_metric_model("dino", str(folders[1]), dtype=torch.float64)
    image = noise(40, 30, 13)
    torch.testing.assert_close(image_embeddings(wide, [image]), image_embeddings(dino, [image]), atol=1e-5, rtol=1e-5)


def test_a_prompt_with_the_identifier_needs_the_class_word(models) -> None:
    """clip_t and score without a class word refuse a prompt with 'sks' (the class word has no default)."""
    clip, _ = models
    image = noise(32, 32, 14)
    says = (
        "The prompt 'a sks dog' contains the identifier 'sks': give the class word ('dog', 'backpack') that replaces "
        "it for CLIP-T."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(says) + "$"):
        clip_t(clip, image, "a sks dog")
    with pytest.raises(DreamMixInputError, match="^" + re.escape(says) + "$"):
        score(image, box_mask(32, 32, (4, 4, 20, 20)), [], "a sks dog", clip=clip)


def test_clip_alone_scores_clip_i_against_the_references(models) -> None:
    clip, _ = models
    scene, box = noise(64, 48, 15), (8, 8, 40, 40)
    references = [noise(30, 30, 16)]
    result = score(scene, box_mask(64, 48, box), references, "a dog", clip=clip)
    assert result.clip_i == pytest.approx(identity_similarity(clip, scene.crop(box), references), abs=1e-6)
    assert result.dino is None
