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


class _RecordingProcessor:
    """A chat processor that records what ask_vlm hands it and returns fixed token ids (with token_type_ids)."""

    chat_template = "any"

    def __init__(self) -> None:
        self.calls: dict = {}

    def apply_chat_template(self, messages, **options):
        self.calls["messages"], self.calls["template_options"] = messages, options
        return "PROMPT"

    def __call__(self, images, text, return_tensors):
        import torch
        from transformers import BatchFeature

        self.calls["images"], self.calls["text"] = images, text
        ids = torch.tensor([[5, 6, 7]])
        pixels = torch.zeros(1, 3, 2, 2)
        return BatchFeature({"input_ids": ids, "attention_mask": ids * 0 + 1, "token_type_ids": ids * 0,
                             "pixel_values": pixels})  # fmt: skip

    def batch_decode(self, tokens, skip_special_tokens):
        self.calls["decoded"], self.calls["skip_special_tokens"] = tokens.tolist(), skip_special_tokens
        return ["  red, leather \n"]


class _RecordingModel:
    """A float64 model on the CPU whose generate records its arguments and appends two tokens."""

    def __init__(self, takes_token_types: bool) -> None:
        import torch

        self.device, self.dtype, self.generated = torch.device("cpu"), torch.float64, {}
        if takes_token_types:
            self.forward = lambda input_ids, attention_mask=None, token_type_ids=None, pixel_values=None: None
        else:
            self.forward = lambda input_ids, attention_mask=None, pixel_values=None: None

    def generate(self, **kwargs):
        import torch

        self.generated = kwargs
        return torch.cat([kwargs["input_ids"], torch.tensor([[8, 9]])], dim=1)


@pytest.mark.parametrize("takes_token_types", [False, True])
def test_ask_vlm_asks_one_greedy_chat_question_about_the_rgb_image(takes_token_types):
    """The question goes in one user turn after the image, through the chat template with the generation prompt;
    the RGB image and that prompt go to the processor; pixels take the model's dtype; generation is greedy
    (no sampling, one beam) with 48 new tokens by default; token_type_ids reach only a model whose forward takes
    them; only the new tokens are decoded, without special tokens, and the answer is stripped."""
    import torch

    processor, model = _RecordingProcessor(), _RecordingModel(takes_token_types)
    image = Image.new("RGBA", (8, 6), (200, 30, 30, 128))
    assert ask_vlm(model, processor, image, "what colour?") == "red, leather"
    content = [{"type": "image"}, {"type": "text", "text": "what colour?"}]
    assert processor.calls["messages"] == [{"role": "user", "content": content}]
    options = processor.calls["template_options"]
    assert options["add_generation_prompt"] is True and not options.get("tokenize", False)  # rendered as text
    assert processor.calls["text"] == ["PROMPT"] and [i.mode for i in processor.calls["images"]] == ["RGB"]
    assert processor.calls["images"][0].getpixel((0, 0)) == (200, 30, 30)
    generated = model.generated
    expected = {"input_ids", "attention_mask", "pixel_values", "max_new_tokens", "do_sample", "num_beams"}
    assert generated.keys() == expected | ({"token_type_ids"} if takes_token_types else set())
    assert generated["pixel_values"].dtype == torch.float64 and generated["input_ids"].dtype == torch.int64
    assert (generated["max_new_tokens"], generated["num_beams"]) == (48, 1) and not generated["do_sample"]
    assert processor.calls["decoded"] == [[8, 9]] and processor.calls["skip_special_tokens"] is True


def test_ask_vlm_refuses_a_processor_without_any_chat_template():
    """A processor with no chat_template attribute at all is refused like one whose template is None."""
    expected = "The VLM's processor has no chat template; use a chat (instruction-tuned) VLM."
    with pytest.raises(DreamMixInputError, match=whole(expected)):
        ask_vlm(None, SimpleNamespace(), _images()[0], "colour?")


def test_describe_subject_asks_for_48_new_tokens_by_default(monkeypatch):
    asked = []
    monkeypatch.setattr(vlm, "ask_vlm", lambda model, processor, image, question, max_new_tokens: asked.append(
        max_new_tokens) or "red")  # fmt: skip
    assert describe_subject(None, None, _images(), "teapot") == ["red"]
    assert asked == [48, 48]


def test_load_vlm_passes_allow_download_on(monkeypatch):
    """Whether a Hub id may be downloaded is decided by the caller: the flag reaches the folder lookup."""
    seen = []

    def lookup(source, what, example, allow_download):
        seen.append((source, what, allow_download))
        raise DreamMixInputError("stop")

    monkeypatch.setattr(vlm, "local_model_folder", lookup)
    for allow in (True, False):
        with pytest.raises(DreamMixInputError, match="^stop$"):
            load_vlm(" org/vlm ", allow_download=allow)
    assert seen == [("org/vlm", "VLM", True), ("org/vlm", "VLM", False)]


def test_load_vlm_puts_the_model_on_the_device_asked_for(tmp_path):
    """The meta device needs no memory and shows the model was moved there."""
    folder = str(save_tiny_vlm(tmp_path))
    assert load_vlm(folder, device="meta")[0].device.type == "meta"
