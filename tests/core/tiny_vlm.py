"""A tiny random-weight vision-language model (LLaVA-shaped), built in code and saved to a folder.

No download: the tokenizer is a word-level `tokenizers` model over a small vocabulary, the image
processor is the PIL one (no torchvision), and the weights are seeded random. Saved with
`save_pretrained`, the folder loads back through `dreammix_core.attributes.vlm.load_vlm` like a real VLM.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

# The PIL image processors (no torchvision): named ...Pil since transformers 5, the plain class before.
CLIPImageProcessorPil = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

IMAGE_SIZE = 32
PATCH_SIZE = 8
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
WORDS = (
    "user assistant : , . ; - * ( ) [ ] { } \" ' "
    "a an the of and or is it its with made has in on this that list visible attributes image answer "
    "colour color material texture shape pattern red green blue yellow black white brown grey orange pink purple "
    "leather wood wooden metal metallic plastic glass clay ceramic fabric cotton wool paper stone "
    "glossy matte smooth rough soft shiny fuzzy round square rectangular oval flat tall striped dotted plain "
    "floral checked teapot teapots backpack backpacks dog dogs cat toy bag cup"
).split()
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image> {% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: lower-cased, split at whitespace and punctuation, unknown words map to <unk>."""
    vocab = {token: index for index, token in enumerate(SPECIAL + list(dict.fromkeys(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, no space before punctuation
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=CHAT_TEMPLATE,
    )


def tiny_processor() -> LlavaProcessor:
    tokenizer = tiny_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped again by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )


def tiny_llava(tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """Two-layer CLIP vision tower and two-layer Llama, hidden size 32, seeded random weights."""
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():  # explicit, seeded initialisation: the same weights on every machine
        generator = torch.Generator().manual_seed(0)
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model.eval()


def save_tiny_vlm(folder: str | Path) -> Path:
    """Builds the tiny model and processor and saves both into `folder` (created if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
