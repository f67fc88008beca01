"""Measures TAS on a real ComfyUI CLIP; run under the ComfyUI python, prints one JSON line.

usage: python tas_probe.py COMFYUI_PATH PACK_DIR (CHECKPOINT | sdxl | flux1 | klein | z_image | qwen_image)
PACK_DIR is a custom_nodes-style folder whose name ComfyUI imports the pack under. flux1, klein, z_image and
qwen_image measure the DiTs' text encoders (CLIP-L + T5-XXL; Qwen3 4B for FLUX.2 Klein and for Z-Image; Qwen2.5-VL
7B for Qwen-Image) built in process from ComfyUI's classes at a small width.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile

from device import comfyui_device_flags

ATTRIBUTES = ["light blue", "polka-dotted", "nylon"]
TEMPLATE = "a photo of a sks {attributes}"
PROMPT = "a photo of a (red:1.2) sks backpack on the grass, " + "highly detailed, " * 30


def refusal(call) -> str:
    """The message a node call stops with, as '<exception type>: <message>'."""
    try:
        call()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "accepted"


class Sd3TextEncoders:
    """Stand-in for the CLIP TripleCLIPLoader gives for SD3: CLIP-L, CLIP-G and T5-XXL token streams and a 4096-wide
    embedding. It tokenizes with the real CLIP-L and encodes to zeros; TAS refuses it before using them."""

    def __init__(self, clip) -> None:
        self.clip = clip

    def tokenize(self, text: str, return_word_ids: bool = False) -> dict:
        tokens = self.clip.tokenize(text, return_word_ids=return_word_ids)["l"]
        return {"g": tokens, "l": tokens, "t5xxl": tokens}

    def encode_from_tokens(self, tokens: dict, return_pooled: bool = False):
        import torch

        return torch.zeros(1, 77, 4096), torch.zeros(1, 768)

    def encode_from_tokens_scheduled(self, tokens: dict) -> list:
        embedding, pooled = self.encode_from_tokens(tokens)
        return [[embedding, {"pooled_output": pooled}]]


TINY_TEXT_ENCODERS = {
    # ComfyUI's own hook for a text encoder's config ("<model name>_model_config"): the real classes, small.
    "t5xxl_model_config": {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 2, "d_kv": 32},
    "clip_l_model_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 64,
    },
    # Qwen2.5-VL 7B's language model, two layers (its attention heads stay 128 wide: the config fixes head_dim).
    "qwen25_7b_model_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    },
    # 28 layers so that Klein's layers 9, 18 and 27 exist (the real Qwen3 4B has 36).
    "qwen3_4b_model_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 28,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    },
}


TINY_SDXL_ENCODERS = {
    # SDXL's CLIP-L and bigG at their real widths (TAS slices the embedding by width), three layers each (SDXL takes
    # the penultimate one), narrow MLPs.
    f"clip_{key}_model_config": {"intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2}
    for key in ("l", "g")
}
TINY_FAMILIES = ("sdxl", "flux1", "klein", "z_image", "qwen_image")


def tiny_clip(family: str):
    """SDXL's CLIP-L + bigG, FLUX.1's CLIP-L + T5-XXL, FLUX.2 Klein's or Z-Image's Qwen3 4B or Qwen-Image's Qwen2.5-VL
    as ComfyUI builds them, small, with seeded random weights (ComfyUI allocates layers uninitialised; Qwen2.5-VL's
    vision tower, full size whatever the config and unused by text prompts, is left as allocated) and the real
    tokenizers."""
    import comfy.sd
    import comfy.sdxl_clip
    import comfy.text_encoders.flux as flux
    import torch

    options = TINY_TEXT_ENCODERS
    if family == "sdxl":
        clip_class, tokenizer = comfy.sdxl_clip.SDXLClipModel, comfy.sdxl_clip.SDXLTokenizer
        options = TINY_SDXL_ENCODERS
    elif family == "flux1":
        clip_class, tokenizer = flux.flux_clip(), flux.FluxTokenizer
    elif family == "qwen_image":
        import comfy.text_encoders.qwen_image as qwen_image

        clip_class, tokenizer = qwen_image.te(), qwen_image.QwenImageTokenizer
    elif family == "z_image":
        import comfy.text_encoders.z_image as z_image

        clip_class, tokenizer = z_image.te(), z_image.ZImageTokenizer
    else:
        clip_class, tokenizer = flux.klein_te(), flux.KleinTokenizer
    target = type("Target", (), {"clip": clip_class, "tokenizer": tokenizer, "params": {}})
    clip = comfy.sd.CLIP(target, model_options=options)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in clip.cond_stage_model.named_parameters():
            if ".visual." in name:
                continue
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02 if param.ndim > 1 else 1.0)
    return clip


def hf_tokenizer(clip, key: str):
    """The Hugging Face tokenizer behind ComfyUI's tokenizer of encoder `key`."""
    inner = getattr(clip.tokenizer, f"clip_{key}", None) or getattr(clip.tokenizer, key)
    return inner.tokenizer


def expected_content(clip, key: str, tokens: list) -> list[bool]:
    """The prompt's own tokens by an independent rule: word ids (start, end and padding have 0) less the chat
    template's tokens, counted with the Hugging Face tokenizer on the template's two halves."""
    content = [token[2] != 0 for token in tokens]
    template = getattr(clip.tokenizer, "llama_template", None)
    if template:
        before, after = template.split("{}")
        tokenizer = hf_tokenizer(clip, key)
        head = len(tokenizer(before, add_special_tokens=False)["input_ids"])
        tail = len(tokenizer(after, add_special_tokens=False)["input_ids"])
        worded = [i for i, flag in enumerate(content) if flag]
        for i in worded[:head] + worded[len(worded) - tail :]:
            content[i] = False
    return content


def template_head_tokens(clip, key: str) -> int:
    """The chat template's tokens before the prompt, counted with the Hugging Face tokenizer (0 without one)."""
    template = getattr(clip.tokenizer, "llama_template", None)
    if not template:
        return 0
    return len(hf_tokenizer(clip, key)(template.split("{}")[0], add_special_tokens=False)["input_ids"])


def expected_positions(clip, key: str, text: str) -> list[int]:
    """Attribute positions from the Hugging Face tokenizer: the text's tokens as the tokenizer splits it (ComfyUI
    splits CLIP and T5 text at spaces, Qwen3 text with weights disabled as one piece, inside the template)."""
    tokenizer = hf_tokenizer(clip, key)
    template = getattr(clip.tokenizer, "llama_template", None)
    if template:
        ids = tokenizer(template.format(text), add_special_tokens=False)["input_ids"]
        words = [tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in ATTRIBUTES]
    else:
        ids = tokenizer(text)["input_ids"]
        words = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in ATTRIBUTES]
    positions = []
    for word_ids in words:
        start = next(i for i in range(len(ids)) if ids[i : i + len(word_ids)] == word_ids)
        positions += range(start, start + len(word_ids))
    return positions


def measure(tas, module, clip) -> dict:
    """TAS's decomposed conditioning against the plain one and the attribute directions, slice by slice."""
    import torch

    decomposed, plain = tas.execute(clip, PROMPT, ", ".join(ATTRIBUTES), TEMPLATE, 1.0).args
    reference = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))  # what CLIPTextEncode does
    tokens = clip.tokenize(PROMPT, return_word_ids=True)
    embedding, extras = decomposed[0]
    core = sys.modules[module.__name__.split(".nodes.")[0] + ".dreammix_core.attributes.tas"]
    encoder = module.ComfyTokenEncoder(clip)
    slices = core.encoder_slices(encoder, tokens, embedding.shape[-1])
    key = slices[0][0]
    content = torch.tensor(expected_content(clip, key, [t for chunk in tokens[key] for t in chunk]))
    dropped = len(content) - embedding.shape[1]  # Qwen-Image's encoder leaves its template's head out
    content = content[dropped:]
    directions, attribute_pooled = core.attribute_directions(encoder, ATTRIBUTES, TEMPLATE)

    def max_cos(vectors: torch.Tensor, against: torch.Tensor) -> float:
        a = torch.nn.functional.normalize(vectors.double(), dim=-1)
        b = torch.nn.functional.normalize(against.double(), dim=-1)
        return float((a @ b.T).abs().max())

    names = [f"{key}[{begin}:{end}]" for key, begin, end in slices]
    token_cos = {
        name: max_cos(embedding[0, content, begin:end], rows) for name, (begin, end, rows) in zip(names, directions)
    }
    before_cos = {
        name: max_cos(plain[0][0][0, content, begin:end], rows) for name, (begin, end, rows) in zip(names, directions)
    }
    zero, _ = tas.execute(clip, PROMPT, ", ".join(ATTRIBUTES), TEMPLATE, 0.0).args
    pooled, reference_pooled = extras.get("pooled_output"), reference[0][1].get("pooled_output")

    def same_pooled(a, b) -> bool:
        return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))

    text = TEMPLATE.format(attributes=" ".join(ATTRIBUTES))
    text_tokens = clip.tokenize(text, return_word_ids=True)
    found_positions = {
        key: core.locate_attributes(encoder, key, text_tokens, ATTRIBUTES) for key in {key for key, _, _ in slices}
    }
    return {
        "encoders": sorted({key for key, _, _ in slices}),
        "slices": names,
        "direction_rows": {name: int(rows.shape[0]) for name, (_, _, rows) in zip(names, directions)},
        "prompt_tokens": int(embedding.shape[1]),
        "dropped_tokens": dropped,
        "template_head_tokens": template_head_tokens(clip, key),
        "content_tokens": int(content.sum()),
        "max_cos_tokens": token_cos,
        "max_cos_tokens_before": before_cos,
        "max_cos_pooled": None if pooled is None else max_cos(pooled, attribute_pooled),
        "plain_equals_clip_text_encode": bool(
            torch.equal(plain[0][0], reference[0][0])
            and same_pooled(plain[0][1].get("pooled_output"), reference_pooled)
        ),
        "non_content_untouched": bool(torch.equal(embedding[:, ~content], plain[0][0][:, ~content])),
        "content_changed": bool((embedding[:, content] != plain[0][0][:, content]).any(dim=-1).all()),
        "strength0_identical": bool(
            torch.equal(zero[0][0], reference[0][0]) and same_pooled(zero[0][1].get("pooled_output"), reference_pooled)
        ),
        "positions_found": found_positions,
        "positions_expected": {key: expected_positions(clip, key, text) for key in found_positions},
    }


def main(comfyui: str, pack_dir: str, source: str) -> dict:
    """`source`: a checkpoint file (SD1.5), or one of TINY_FAMILIES for those text encoders built here."""
    sys.path.insert(0, comfyui)
    sys.argv = [sys.argv[0], *comfyui_device_flags()]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.sd
    import torch

    import nodes

    if not asyncio.run(nodes.load_custom_node(pack_dir)):
        raise SystemExit("the pack did not load")
    tas = nodes.NODE_CLASS_MAPPINGS["DreamMixTAS"]
    module = sys.modules[tas.__module__]
    if source in TINY_FAMILIES:
        return measure(tas, module, tiny_clip(source))
    clip = comfy.sd.load_checkpoint_guess_config(source, output_vae=False, output_clip=True, output_model=False)[1]
    report = measure(tas, module, clip)

    try:
        tas.execute(clip, "a photo of a red sks backpack", ", ".join(f"shade{i}" for i in range(40)), TEMPLATE, 1.0)
        long_attributes = "accepted"
    except Exception as error:  # the message the node shows for an attribute text over one chunk
        long_attributes = f"{type(error).__name__}: {error}"

    # Refusals: no CLIP (a checkpoint without text encoder), text encoders of another family, a VLM folder listed by
    # the node but removed before the run (the race a queued prompt can meet), an image of no IMAGE shape.
    import folder_paths

    refine = nodes.NODE_CLASS_MAPPINGS["DreamMixAttributeRefine"]
    vlm_root = tempfile.mkdtemp()
    folder_paths.add_model_folder_path(module.VLM_FOLDER, vlm_root)
    os.makedirs(os.path.join(vlm_root, "removed_vlm"))
    with open(os.path.join(vlm_root, "removed_vlm", "config.json"), "w") as handle:
        handle.write("{}")
    removed_vlm_was_listed = "removed_vlm" in module.vlm_choices()
    shutil.rmtree(vlm_root)
    options = {"class_word": ["teapot"], "vlm_hub_id": [""], "max_new_tokens": [8]}
    photo = torch.rand(1, 64, 64, 3)
    refusals = {
        "no_clip": refusal(lambda: tas.execute(None, PROMPT, "blue", TEMPLATE, 1.0)),
        "sd3_text_encoders": refusal(lambda: tas.execute(Sd3TextEncoders(clip), PROMPT, "blue", TEMPLATE, 1.0)),
        "vlm_folder_removed": refusal(
            lambda: refine.execute([photo], typed_attributes=[""], vlm=["removed_vlm"], **options)
        ),
        "image_of_no_image_shape": refusal(
            lambda: refine.execute([torch.rand(8)], typed_attributes=["blue"], vlm=[module.NO_VLM], **options)
        ),
    }

    return {
        **report,
        "refusals": refusals,
        "removed_vlm_was_listed": removed_vlm_was_listed,
        "long_attributes": long_attributes,
    }


if __name__ == "__main__":
    print("TAS_PROBE " + json.dumps(main(*sys.argv[1:4])))
