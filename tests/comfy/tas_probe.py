"""Measures TAS on a real ComfyUI CLIP; run under the ComfyUI python, prints one JSON line.

usage: python tas_probe.py COMFYUI_PATH PACK_DIR CHECKPOINT
PACK_DIR is a custom_nodes-style folder whose name ComfyUI imports the pack under.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile

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


class FluxTextEncoders:
    """Stand-in for the CLIP DualCLIPLoader gives for Flux: CLIP-L and T5-XXL token streams and a 4096-wide
    embedding (T5-XXL's). It tokenizes with the real CLIP-L and encodes to zeros; TAS refuses it before using them."""

    def __init__(self, clip) -> None:
        self.clip = clip

    def tokenize(self, text: str, return_word_ids: bool = False) -> dict:
        tokens = self.clip.tokenize(text, return_word_ids=return_word_ids)["l"]
        return {"l": tokens, "t5xxl": tokens}

    def encode_from_tokens(self, tokens: dict, return_pooled: bool = False):
        import torch

        return torch.zeros(1, 77, 4096), torch.zeros(1, 768)

    def encode_from_tokens_scheduled(self, tokens: dict) -> list:
        embedding, pooled = self.encode_from_tokens(tokens)
        return [[embedding, {"pooled_output": pooled}]]


def main(comfyui: str, pack_dir: str, checkpoint: str) -> dict:
    sys.path.insert(0, comfyui)
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.sd
    import torch

    import nodes

    if not asyncio.run(nodes.load_custom_node(pack_dir)):
        raise SystemExit("the pack did not load")
    tas = nodes.NODE_CLASS_MAPPINGS["DreamMixTAS"]
    module = sys.modules[tas.__module__]
    _, clip, _, _ = comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=False, output_clip=True)[:4]

    decomposed, plain = tas.execute(clip, PROMPT, ", ".join(ATTRIBUTES), TEMPLATE, 1.0).args
    reference = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))  # what CLIPTextEncode does
    tokens = clip.tokenize(PROMPT, return_word_ids=True)
    words = [t[2] for chunk in next(iter(tokens.values())) for t in chunk]
    content = torch.tensor([w != 0 for w in words])
    embedding, extras = decomposed[0]
    directions, attribute_pooled = module.attribute_directions(clip, ATTRIBUTES, TEMPLATE)

    def max_cos(vectors: torch.Tensor, against: torch.Tensor) -> float:
        a = torch.nn.functional.normalize(vectors.double(), dim=-1)
        b = torch.nn.functional.normalize(against.double(), dim=-1)
        return float((a @ b.T).abs().max())

    token_cos = {
        key: max_cos(embedding[0, content, begin:end], directions[key])
        for key, begin, end in module.encoder_slices(tokens, embedding.shape[-1])
    }
    before_cos = {
        key: max_cos(plain[0][0][0, content, begin:end], directions[key])
        for key, begin, end in module.encoder_slices(tokens, embedding.shape[-1])
    }
    zero, zero_plain = tas.execute(clip, PROMPT, ", ".join(ATTRIBUTES), TEMPLATE, 0.0).args

    # Positions checked against the Hugging Face tokenizer behind ComfyUI's tokenizer.
    text = TEMPLATE.format(attributes=" ".join(ATTRIBUTES))
    hf_tokenizers = {key: getattr(clip.tokenizer, f"clip_{key}").tokenizer for key in directions}
    expected_positions = {}
    for key, tokenizer in hf_tokenizers.items():
        ids = tokenizer(text)["input_ids"]
        positions = []
        for word in ATTRIBUTES:
            word_ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            start = next(i for i in range(len(ids)) if ids[i : i + len(word_ids)] == word_ids)
            positions += range(start, start + len(word_ids))
        expected_positions[key] = positions
    text_tokens = clip.tokenize(text, return_word_ids=True)
    found_positions = {}
    for key in directions:
        ids = module._flatten(text_tokens[key])[0]
        word_tokens = {}
        for word in ATTRIBUTES:
            word_ids, word_words = module._flatten(clip.tokenize(word, return_word_ids=True)[key])
            word_tokens[word] = [t for t, w in zip(word_ids, word_words) if w != 0]
        found_positions[key] = module.attribute_positions(ids, word_tokens)

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
        "flux_text_encoders": refusal(lambda: tas.execute(FluxTextEncoders(clip), PROMPT, "blue", TEMPLATE, 1.0)),
        "vlm_folder_removed": refusal(
            lambda: refine.execute([photo], typed_attributes=[""], vlm=["removed_vlm"], **options)
        ),
        "image_of_no_image_shape": refusal(
            lambda: refine.execute([torch.rand(8)], typed_attributes=["blue"], vlm=[module.NO_VLM], **options)
        ),
    }

    return {
        "refusals": refusals,
        "removed_vlm_was_listed": removed_vlm_was_listed,
        "long_attributes": long_attributes,
        "encoders": sorted(directions),
        "direction_rows": {key: int(value.shape[0]) for key, value in directions.items()},
        "prompt_tokens": int(embedding.shape[1]),
        "content_tokens": int(content.sum()),
        "max_cos_tokens": token_cos,
        "max_cos_tokens_before": before_cos,
        "max_cos_pooled": max_cos(extras["pooled_output"], attribute_pooled),
        "plain_equals_clip_text_encode": bool(
            torch.equal(plain[0][0], reference[0][0])
            and torch.equal(plain[0][1]["pooled_output"], reference[0][1]["pooled_output"])
        ),
        "non_content_untouched": bool(torch.equal(embedding[:, ~content], plain[0][0][:, ~content])),
        "strength0_identical": bool(
            torch.equal(zero[0][0], reference[0][0])
            and torch.equal(zero[0][1]["pooled_output"], reference[0][1]["pooled_output"])
        ),
        "positions_found": found_positions,
        "positions_expected": expected_positions,
    }


if __name__ == "__main__":
    print("TAS_PROBE " + json.dumps(main(*sys.argv[1:4])))
