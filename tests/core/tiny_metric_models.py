"""Tiny random-weight CLIP and DINO (ViT) models, built from configs and saved to folders: no download.

The CLIP tokenizer is a word-level `tokenizers` model that wraps every text in <s> ... </s> (CLIP's
text tower pools at the end token); the image processors are the PIL ones, so no torchvision.
Saved with `save_pretrained`, the folders load through `dreammix_core.evaluation.metrics` like the real models.
Also runnable: `python tiny_metric_models.py FOLDER` writes FOLDER/clip and FOLDER/dino.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPConfig,
    CLIPModel,
    PreTrainedTokenizerFast,
    ViTConfig,
    ViTModel,
)

# The PIL image processors (no torchvision): named ...Pil since transformers 5, the plain class before.
CLIPImageProcessorPil = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
ViTImageProcessorPil = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor

IMAGE_SIZE = 32
PATCH_SIZE = 8
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]
WORDS = (
    "a an the of on in with and photo picture red green blue yellow black white "
    "backpack dog cat teapot toy grass table beach street room sks"
).split()


def _seeded(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    with torch.no_grad():  # explicit seeded weights: the same model on every machine and version
        generator = torch.Generator().manual_seed(seed)
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def tiny_clip_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def save_tiny_clip(folder: str | Path) -> Path:
    """Two-layer CLIP, width 32, on 32x32 images; saved with its tokenizer and PIL image processor."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    _seeded(CLIPModel(config), 0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder)
    return folder


def save_tiny_dino(folder: str | Path) -> Path:
    """Two-layer ViT without pooler, width 32, on 32x32 images (DINO's shape, random weights)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    _seeded(ViTModel(config, add_pooling_layer=False), 1).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def save_tiny_metric_models(folder: str | Path) -> tuple[Path, Path]:
    """Both models, in FOLDER/clip and FOLDER/dino."""
    folder = Path(folder)
    return save_tiny_clip(folder / "clip"), save_tiny_dino(folder / "dino")


if __name__ == "__main__":
    print(*save_tiny_metric_models(sys.argv[1]))
