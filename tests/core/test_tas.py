"""Textual Attribute Substitution math, independent of any text encoder."""

import re

import pytest
import torch

from dreammix_core.attributes.tas import (
    attribute_positions,
    decompose_tokens,
    encoder_slices,
    fill_template,
    find_positions,
    orthonormal_basis,
    parse_attribute_list,
    prompt_positions,
    reject,
    substitute_attributes,
)
from dreammix_core.errors import DreamMixInputError


def test_parse_attribute_list() -> None:
    assert parse_attribute_list(" Light  Blue, clay;clay\nPolka-Dotted. ,") == ["light blue", "clay", "polka-dotted"]
    assert parse_attribute_list(" , ;") == []


def test_template_needs_its_placeholder() -> None:
    assert fill_template("a photo of a sks {attributes}", ["light blue", "clay"]) == "a photo of a sks light blue clay"
    expected = "The attribute template must contain '{attributes}', e.g. 'a photo of a sks {attributes}'."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        fill_template("a photo", ["clay"])


def test_positions_of_multi_token_and_repeated_words() -> None:
    text = [49406, 320, 1125, 539, 320, 2151, 1892, 2151, 2562, 49407]
    assert find_positions(text, [2151, 1892]) == [5, 6]
    assert find_positions(text, [2151]) == [5, 7]
    assert attribute_positions(text, {"light blue": [2151, 1892], "clay": [2562]}) == [5, 6, 8]


# Qwen3's chat template around "a photo" as ComfyUI's FLUX.2 Klein tokenizer gives it (ids read off the real
# tokenizer): <|im_start|> user \n | a  photo | <|im_end|> \n <|im_start|> assistant \n <think> \n\n </think> \n\n,
# then padding (<|endoftext|>, word id 0). The template has no space, so it shares word ids with the prompt.
KLEIN_TEMPLATE = [151644, 872, 198, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]
KLEIN_PROMPT = KLEIN_TEMPLATE[:3] + [64, 6548] + KLEIN_TEMPLATE[3:] + [151643] * 3


@pytest.mark.parametrize(
    "tokens, word_ids, template, expected",
    [
        ([49406, 320, 1125, 2151, 49407, 49407], [0, 1, 2, 3, 0, 0], [], [1, 2, 3]),  # CLIP: start, end, padding
        ([3, 9, 1202, 1, 0], [1, 1, 2, 0, 0], [], [0, 1, 2]),  # T5: no start token
        (KLEIN_PROMPT, [1] * 14 + [0] * 3, KLEIN_TEMPLATE, [3, 4]),
        (KLEIN_TEMPLATE[:3] + [198] + KLEIN_TEMPLATE[3:], [1] * 13, KLEIN_TEMPLATE, [3]),  # a prompt "\n"
        (KLEIN_TEMPLATE[:3] + [64, 198] + KLEIN_TEMPLATE[3:], [1] * 14, KLEIN_TEMPLATE, [3, 4]),  # "a\n"
        (KLEIN_TEMPLATE + [151643], [1] * 12 + [0], KLEIN_TEMPLATE, []),  # the empty prompt
    ],
)
def test_prompt_positions_leave_out_start_end_padding_and_template(tokens, word_ids, template, expected) -> None:
    assert prompt_positions(word_ids, tokens, template) == expected


def test_a_template_that_does_not_surround_the_prompt_is_refused() -> None:
    message = (
        "The text encoder's template does not surround the prompt as it surrounds the empty prompt: TAS cannot tell "
        "the prompt's tokens from the template's."
    )
    with pytest.raises(DreamMixInputError, match="^" + re.escape(message) + "$"):
        prompt_positions([1] * 5, [151644, 872, 198, 64, 6548], KLEIN_TEMPLATE)


@pytest.mark.parametrize(
    "tokens, message",
    [
        ([], "The attribute 'word' tokenises to nothing: type a word the text encoder knows."),
        (
            [7],
            "The attribute 'word' is not among the attribute text's tokens: the text encoder splits it differently "
            "next to its neighbours. Separate the attributes with commas and keep '{attributes}' surrounded by "
            "spaces in the template.",
        ),
    ],
)
def test_missing_attributes_are_refused(tokens: list[int], message: str) -> None:
    with pytest.raises(DreamMixInputError, match="^" + re.escape(message) + "$"):
        attribute_positions([1, 2, 3], {"word": tokens})


def test_rejection_is_a_projection_onto_the_complement_of_the_span() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2, 64, generator=generator)
    directions = torch.stack([a[0], a[1], a[0] + 0.5 * a[1]])  # rank 2, not orthogonal
    basis = orthonormal_basis(directions)
    assert basis.shape == (64, 2)
    vectors = torch.randn(10, 64, generator=generator)
    rejected = reject(vectors, basis)
    cosines = (
        torch.nn.functional.normalize(rejected.double(), dim=-1)
        @ torch.nn.functional.normalize(directions.double(), dim=-1).T
    )
    assert cosines.abs().max() < 1e-5
    assert torch.allclose(reject(rejected, basis), rejected, atol=1e-6)


def test_sequential_rejection_would_not_be_orthogonal() -> None:
    """Why the span is projected at once: rejecting non-orthogonal directions in turn leaves a residue."""
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 32, generator=generator, dtype=torch.float64)
    b = b + 2 * a
    x = torch.randn(32, generator=generator, dtype=torch.float64)
    for d in (a, b):
        x = x - (x @ d) / (d @ d) * d
    assert abs(float(x @ a)) / (x.norm() * a.norm()) > 1e-3


def test_decompose_touches_only_content_tokens_and_each_slice_in_its_space() -> None:
    generator = torch.Generator().manual_seed(2)
    embedding = torch.randn(1, 8, 12, generator=generator)
    content = torch.tensor([False, True, True, True, False, False, True, False])
    left, right = torch.randn(2, 4, generator=generator), torch.randn(3, 8, generator=generator)
    out = decompose_tokens(embedding, content, [(0, 4, left), (4, 12, right)])
    assert torch.equal(out[:, ~content], embedding[:, ~content])
    for begin, end, directions in [(0, 4, left), (4, 12, right)]:
        cos = (
            torch.nn.functional.normalize(out[0, content, begin:end], dim=-1)
            @ torch.nn.functional.normalize(directions, dim=-1).T
        )
        assert cos.abs().max() < 1e-5


def test_strength_zero_is_the_identity_and_strength_is_checked() -> None:
    embedding = torch.randn(1, 5, 6)
    directions = torch.randn(2, 6)
    content = torch.ones(5, dtype=torch.bool)
    assert torch.equal(decompose_tokens(embedding, content, [(0, 6, directions)], 0.0), embedding)
    expected = "TAS strength must be between 0 and 1, got 1.5."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        decompose_tokens(embedding, content, [(0, 6, directions)], 1.5)


def test_orthonormal_basis_by_hand() -> None:
    """Rows (1,0,0), (2,0,0), (0,3,0): a rank-2 span; a dependent row adds no axis; all-zero rows are refused."""
    basis = orthonormal_basis(torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
    assert basis.shape == (3, 2) and basis.dtype == torch.float64
    assert torch.allclose(basis.T @ basis, torch.eye(2, dtype=torch.float64))
    assert torch.allclose(basis @ basis.T, torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)))
    single = orthonormal_basis(torch.tensor([[0.0, 0.0, 5.0]]))
    assert single.shape == (3, 1) and torch.allclose(single.abs().flatten(), torch.tensor([0.0, 0.0, 1.0]).double())
    expected = "The attribute directions are all zero: the attribute words carry no embedding."
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        orthonormal_basis(torch.zeros(2, 3))


class ToySdxlEncoder:
    """A TokenEncoder with SDXL's two encoders: word-level tokens with word ids (start, end and padding have 0)
    for keys "l" and "g", embeddings side by side, CLIP-L's 768 wide first, each token's vector its word's row of a
    random table plus a share of the sequence mean (so tokens depend on their context), and a pooled vector."""

    WIDTHS = {"l": 768, "g": 1280}

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.tables = {key: torch.randn(64, width, generator=generator) for key, width in self.WIDTHS.items()}
        self.vocab: dict[str, int] = {}

    def tokenize(self, text: str) -> dict:
        ids = [self.vocab.setdefault(word, len(self.vocab) + 2) for word in text.split()]
        chunk = [(0, 1.0, 0), *((token, 1.0, i + 1) for i, token in enumerate(ids)), (1, 1.0, 0)]
        chunk += [(1, 1.0, 0)] * (12 - len(chunk))
        return {"g": [chunk], "l": [list(chunk)]}

    def encode(self, tokens: dict) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        for key in ("l", "g"):
            rows = self.tables[key][[token for token, _, _ in tokens[key][0]]]
            parts.append(rows + 0.3 * rows.mean(dim=0))
        embedding = torch.cat(parts, dim=-1)[None]
        return embedding, embedding[:, :, 768:].mean(dim=1)

    def encode_scheduled(self, tokens: dict) -> list:
        embedding, pooled = self.encode(tokens)
        return [[embedding, {"pooled_output": pooled}]]

    def stacked_layers(self, key: str) -> int:
        return 1


def test_substitution_on_a_two_encoder_model_by_hand() -> None:
    """The whole step on SDXL's layout: each content token's CLIP-L part (dims 0-767) and bigG part (768-2047)
    loses its projection on the span of the attribute words' vectors in that part, computed here by least squares;
    start, end and padding stay; the pooled vector loses its projection on the attribute text's pooled vector."""
    encoder = ToySdxlEncoder()
    prompt, attributes = "a photo of a red sks backpack", ["light blue", "nylon"]
    decomposed, plain = substitute_attributes(encoder, prompt, attributes, "a photo of a sks {attributes}", 1.0)
    embedding, pooled = encoder.encode(encoder.tokenize(prompt))
    assert torch.equal(plain[0][0], embedding) and torch.equal(plain[0][1]["pooled_output"], pooled)

    text, _ = encoder.encode(encoder.tokenize("a photo of a sks light blue nylon"))
    attribute_rows = text[0, 6:9].double()  # after start + 5 words: light, blue, nylon
    expected = embedding[0].double().clone()
    for begin, end in ((0, 768), (768, 2048)):
        span = attribute_rows[:, begin:end].T  # (width, 3)
        content = expected[1:8, begin:end].T  # the prompt's 7 words
        coefficients = torch.linalg.lstsq(span, content).solution
        expected[1:8, begin:end] = (content - span @ coefficients).T
    torch.testing.assert_close(decomposed[0][0][0].double(), expected, atol=1e-4, rtol=0)
    assert torch.equal(decomposed[0][0][0, [0, *range(8, 12)]], embedding[0, [0, *range(8, 12)]])

    _, attribute_pooled = encoder.encode(encoder.tokenize("a photo of a sks light blue nylon"))
    direction = attribute_pooled[0].double() / attribute_pooled[0].double().norm()
    expected_pooled = pooled[0].double() - (pooled[0].double() @ direction) * direction
    torch.testing.assert_close(decomposed[0][1]["pooled_output"][0].double(), expected_pooled, atol=1e-4, rtol=0)


class ToyQwenImageEncoder(ToySdxlEncoder):
    """Qwen-Image's layout: one encoder ("qwen25_7b", 16 wide), the prompt inside a chat template (a 5-token system
    turn and the user turn's opening before it, 2 tokens after, word id 0), and an embedding that, as ComfyUI's
    Qwen-Image encoder does, leaves out the system turn: it starts at the user turn's opening (token 3)."""

    WIDTHS = {"qwen25_7b": 16}
    BEFORE, AFTER, DROPPED = ["<s>", "describe", "<e>", "<u>", "user"], ["<e>", "<a>"], 3

    def tokenize(self, text: str) -> dict:
        words = [(self.vocab.setdefault(word, len(self.vocab) + 2), i + 1) for i, word in enumerate(text.split())]
        marks = [(self.vocab.setdefault(word, len(self.vocab) + 2), 0) for word in self.BEFORE + self.AFTER]
        chunk = marks[: len(self.BEFORE)] + words + marks[len(self.BEFORE) :]
        return {"qwen25_7b": [[(token, 1.0, word) for token, word in chunk]]}

    def encode(self, tokens: dict) -> tuple[torch.Tensor, None]:
        rows = self.tables["qwen25_7b"][[token for token, _, _ in tokens["qwen25_7b"][0]]]
        return (rows + 0.3 * rows.mean(dim=0))[None, self.DROPPED :], None

    def encode_scheduled(self, tokens: dict) -> list:
        return [[self.encode(tokens)[0], {}]]


def test_an_encoder_that_leaves_its_system_prompt_out_is_read_from_the_end() -> None:
    """On Qwen-Image's layout the embedding's row i is token i + 3: the prompt's 7 words are rows 2-8 (tokens 5-11)
    and lose their projection on the span of the attribute words' rows (least squares here); the template rows
    stay as they were."""
    encoder = ToyQwenImageEncoder()
    prompt, attributes = "a photo of a red sks backpack", ["light blue", "nylon"]
    decomposed, plain = substitute_attributes(encoder, prompt, attributes, "a photo of a sks {attributes}", 1.0)
    embedding = plain[0][0][0].double()
    assert embedding.shape[0] == 5 + 7 + 2 - 3

    text, _ = encoder.encode(encoder.tokenize("a photo of a sks light blue nylon"))
    span = text[0, [7, 8, 9]].double().T  # tokens 10-12 (light, blue, nylon) after the 3 left out
    content = embedding[2:9].T  # the prompt's words: tokens 5-11
    expected = embedding.clone()
    expected[2:9] = (content - span @ torch.linalg.lstsq(span, content).solution).T
    torch.testing.assert_close(decomposed[0][0][0].double(), expected, atol=1e-5, rtol=0)
    assert torch.equal(decomposed[0][0][0, [0, 1, 9, 10]], plain[0][0][0, [0, 1, 9, 10]])


class StackedLayers:
    """Only what slicing asks of an encoder: how many hidden layers each key stacks."""

    def __init__(self, layers: int) -> None:
        self.layers = layers

    def stacked_layers(self, key: str) -> int:
        return self.layers


@pytest.mark.parametrize(
    ("keys", "layers", "width", "expected"),
    [
        (("g", "l"), 1, 2048, [("l", 0, 768), ("g", 768, 2048)]),  # SDXL: CLIP-L first, whatever the key order
        (("l", "t5xxl"), 1, 4096, [("t5xxl", 0, 4096)]),  # FLUX.1: CLIP-L only pooled
        (("qwen3_4b",), 3, 7680, [("qwen3_4b", 0, 2560), ("qwen3_4b", 2560, 5120), ("qwen3_4b", 5120, 7680)]),  # Klein
        (("qwen3_4b",), 1, 2560, [("qwen3_4b", 0, 2560)]),  # Z-Image: the same encoder, one layer
    ],
)
def test_each_encoder_and_stacked_layer_has_its_slice(keys, layers, width, expected) -> None:
    tokens = {key: [[(1, 1.0, 1)]] for key in keys}
    assert encoder_slices(StackedLayers(layers), tokens, width) == expected


def test_a_width_the_layers_do_not_split_is_refused() -> None:
    with pytest.raises(DreamMixInputError, match=r"encoders \['qwen3_4b'\] with embedding width 2560\.$"):
        encoder_slices(StackedLayers(3), {"qwen3_4b": [[(1, 1.0, 1)]]}, 2560)
