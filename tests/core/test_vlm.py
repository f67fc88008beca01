"""The VLM path (load, ask, describe) on a tiny random-weight LLaVA, and the answer parser on realistic answers."""

import re
from types import SimpleNamespace

import pytest
from PIL import Image
from tiny_vlm import save_tiny_vlm

from dreammix_core.attributes import vlm
from dreammix_core.attributes.prompts import VLM_QUESTION, parse_vlm_answer, regular_prompts
from dreammix_core.attributes.vlm import ask_vlm, describe_subject, load_vlm
from dreammix_core.errors import DreamMixInputError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = save_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))
    return load_vlm(str(folder))


def _images() -> list[Image.Image]:
    gradient = Image.linear_gradient("L").resize((48, 40)).convert("RGB")
    return [Image.new("RGB", (32, 32), (200, 30, 30)), gradient]


def test_load_vlm_gives_an_eval_model_and_its_processor(tiny):
    model, processor = tiny
    assert not model.training
    assert processor.chat_template


def test_ask_vlm_returns_only_the_new_text_and_is_repeatable(tiny):
    model, processor = tiny
    image = _images()[0]
    answer = ask_vlm(model, processor, image, "list the colour of the teapot .", max_new_tokens=12)
    assert isinstance(answer, str)
    assert not answer.startswith("user")  # the prompt is not echoed back
    assert "<image>" not in answer and "</s>" not in answer
    assert ask_vlm(model, processor, image, "list the colour of the teapot .", max_new_tokens=12) == answer


def test_describe_subject_on_the_tiny_vlm_gives_clean_words(tiny):
    model, processor = tiny
    # Random weights babble without commas, and the parser drops segments over 3 words: short answers
    # keep the result non-empty, so the cleanliness checks below check something.
    words = describe_subject(model, processor, _images(), "Teapot", max_new_tokens=3)
    assert isinstance(words, list) and words
    question = VLM_QUESTION.format(class_word="teapot")
    answers = " ".join(ask_vlm(model, processor, image, question, max_new_tokens=3) for image in _images())
    assert all(part in answers.split() for word in words for part in word.split())
    assert all(isinstance(word, str) and word == word.lower().strip() and word for word in words)
    assert len(set(words)) == len(words)
    assert all(1 <= len(word.split()) <= 3 for word in words)
    assert not {"teapot", "teapots"} & {part for word in words for part in word.split()}


def test_describe_subject_ranks_words_by_how_many_images_mention_them(monkeypatch):
    answers = iter(["Green, glossy, round", "round, clay; green", "Round. Striped."])
    questions = []

    def fake_ask(model, processor, image, question, max_new_tokens=48):
        questions.append(question)
        return next(answers)

    monkeypatch.setattr(vlm, "ask_vlm", fake_ask)
    words = describe_subject(None, None, _images() + _images()[:1], "teapot")
    assert words == ["round", "green", "glossy", "clay", "striped"]
    assert questions == [VLM_QUESTION.format(class_word="teapot")] * 3


def whole(message: str) -> str:
    """A pattern matching exactly `message`."""
    return "^" + re.escape(message) + "$"


def test_describe_subject_needs_images_and_a_class_word():
    with pytest.raises(DreamMixInputError, match=whole("Give at least one image of the subject to describe.")):
        describe_subject(None, None, [], "teapot")
    with pytest.raises(DreamMixInputError, match=whole("Type the subject's class word, e.g. 'backpack' or 'dog'.")):
        describe_subject(None, None, _images(), "  ")


def test_load_vlm_missing_folder_says_so(tmp_path):
    missing = tmp_path / "no_such_vlm"
    expected = (
        f"The VLM folder '{missing}' does not exist. Give the folder that holds the model's config.json, or a "
        "Hugging Face id such as 'llava-hf/llava-interleave-qwen-0.5b-hf'."
    )
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        load_vlm(str(missing))


def test_load_vlm_empty_folder_has_no_model(tmp_path):
    expected = (
        f"The VLM folder '{tmp_path}' has no model in it (no config.json). Put all files of the model there, e.g. "
        "those of 'llava-hf/llava-interleave-qwen-0.5b-hf'."
    )
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        load_vlm(str(tmp_path))


def test_load_vlm_uncached_hub_id_fails_fast_offline():
    with pytest.raises(DreamMixInputError) as not_cached:
        load_vlm("dreammix-tests/no-such-vlm")
    expected = (
        "The VLM 'dreammix-tests/no-such-vlm' is not in the local Hugging Face cache. Download it first "
        "(e.g. `hf download dreammix-tests/no-such-vlm`) or give the local folder that holds its files."
    )
    # the parenthesis holds huggingface_hub's own error, type and text
    assert re.fullmatch(re.escape(expected) + r" \(.+\)", str(not_cached.value), re.DOTALL)
    empty = "Give the VLM as a local folder or a Hugging Face id, e.g. 'llava-hf/llava-interleave-qwen-0.5b-hf'."
    with pytest.raises(DreamMixInputError, match=whole(empty)):
        load_vlm("  ")


def test_ask_vlm_needs_a_chat_template():
    expected = "The VLM's processor has no chat template; use a chat (instruction-tuned) VLM."
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        ask_vlm(None, SimpleNamespace(chat_template=None), _images()[0], "colour?")


_ECHOED_QUESTION = VLM_QUESTION.format(class_word="backpack") + "\nred, leather"

PARSER_CASES = [
    ("red, leather, glossy, round, striped", "backpack", ["red", "leather", "glossy", "round", "striped"]),
    ("Red, LEATHER, glossy, red, Leather", "backpack", ["red", "leather", "glossy"]),
    ('["brown", "clay", "glossy", "round"]', "teapot", ["brown", "clay", "glossy", "round"]),
    (
        '{"colour": "brown", "material": ["clay", "ceramic"], "texture": "glossy"}',
        "teapot",
        ["brown", "clay", "ceramic", "glossy"],
    ),
    ('```json\n["red", "leather"]\n```', "backpack", ["red", "leather"]),
    (
        "- Color: red\n- Material: leather\n- Texture: smooth\n- Shape: rectangular\n- Pattern: plain",
        "backpack",
        ["red", "leather", "smooth", "rectangular", "plain"],
    ),
    ("1. red\n2. leather\n3. glossy", "backpack", ["red", "leather", "glossy"]),
    ("1) Dark brown\n2) Ceramic", "teapot", ["dark brown", "ceramic"]),
    ("1. **Colour**: Red\n2. **Material**: Leather", "backpack", ["red", "leather"]),
    ("The teapot is made of clay and has a glossy finish.", "teapot", ["clay", "glossy"]),
    ("The backpack is red, made of leather, and glossy.", "backpack", ["red", "leather", "glossy"]),
    ("Answer: blue, fabric, soft", "bag", ["blue", "fabric", "soft"]),
    ("Two backpacks: red, canvas, padded straps", "backpack", ["red", "canvas", "padded straps"]),
    ("Teapots, brown, clay", "teapot", ["brown", "clay"]),
    ("brown, plush, teddy bears, soft", "teddy bear", ["brown", "plush", "soft"]),
    ("", "teapot", []),
    ("   \n", "teapot", []),
    ("white; ceramic; smooth; round", "cup", ["white", "ceramic", "smooth", "round"]),
    ("**Red**, **leather**, *glossy*", "backpack", ["red", "leather", "glossy"]),
    ("red/black, nylon, zippered", "backpack", ["red", "black", "nylon", "zippered"]),
    ("red (colour), leather (material)", "backpack", ["red", "leather"]),
    (
        "Colour: golden brown. Material: fluffy fur. Shape: small and round.",
        "dog",
        ["golden brown", "fluffy fur", "small", "round"],
    ),
    pytest.param(
        _ECHOED_QUESTION,
        "backpack",
        ["red", "leather"],
        id="echoed-question",
    ),
    pytest.param(
        '{"attributes": {"colour": ["blue"], "pattern": "floral"}}',
        "cup",
        ["blue", "floral"],
        id="nested-json-dict",
    ),
    pytest.param(
        "The dog is a golden retriever with fluffy, light brown fur.",
        "dog",
        ["golden retriever", "fluffy", "light brown fur"],
        id="prose-with",
    ),
    pytest.param(
        "Sure! Here are the attributes: red, leather, glossy.",
        "backpack",
        ["red", "leather", "glossy"],
        id="chatty-preamble",
    ),
]


@pytest.mark.parametrize(("answer", "class_word", "expected"), PARSER_CASES)
def test_parse_vlm_answer_on_realistic_answers(answer, class_word, expected):
    assert parse_vlm_answer(answer, class_word) == expected


def test_regular_prompts_never_carry_the_identifier() -> None:
    """Hand-written expectation: the bare class, then the class with each attribute once; an attribute 'sks' is
    refused."""
    assert regular_prompts("teapot", ["clay", "glossy", "clay"]) == [
        "a photo of a teapot",
        "a photo of a clay teapot",
        "a photo of a glossy teapot",
    ]
    expected = "Regular prompts describe the class, never the subject: remove 'sks' from 'a photo of a sks teapot'"
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        regular_prompts("teapot", ["clay", "sks"])


def test_the_answer_is_the_greedy_continuation_of_the_chat_prompt(tiny):
    """Decoded here token by token (argmax of the logits after the chat prompt with its generation prompt), while the
    model's own generation config asks for sampling over beams: ask_vlm must decode greedily whatever that says."""
    import torch

    model, processor = tiny
    image = _images()[1]
    question = "list the colour of the teapot ."
    saved = model.generation_config.to_dict()
    model.generation_config.update(do_sample=True, num_beams=2, top_k=5, temperature=2.0)
    try:
        answer = ask_vlm(model, processor, image, question, max_new_tokens=6)
    finally:
        model.generation_config.update(**saved)
    prompt = f"user : <image> {question} </s> assistant : "  # the tiny chat template, written out by hand
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    ids = inputs["input_ids"]
    with torch.inference_mode():
        for _ in range(6):
            logits = model(input_ids=ids, pixel_values=inputs["pixel_values"]).logits
            next_id = logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
            if next_id == processor.tokenizer.eos_token_id:
                break
    expected = processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert answer == expected and expected


def test_load_vlm_takes_the_dtype_asked_for(tmp_path):
    folder = str(save_tiny_vlm(tmp_path))
    import torch

    assert load_vlm(folder)[0].dtype == torch.float32  # as saved
    assert load_vlm(folder, dtype=torch.float64)[0].dtype == torch.float64
