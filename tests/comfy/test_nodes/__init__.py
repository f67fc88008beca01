"""Test-only ComfyUI nodes, linked in beside the pack by the ComfyUI tier (server.py), never shipped.

ComfyUI's CLIP loaders build a text encoder's full-size config whatever the file holds, so they cannot load the
tiny Qwen2.5-VL of make_qwen_models.py. This loader runs ComfyUI's own loading code
(comfy.sd.load_text_encoder_state_dicts) with the shrunk config the file's metadata carries, through the
`<encoder>_model_config` option ComfyUI reads.
"""

import json

import comfy.sd
import comfy.utils
import folder_paths

ENCODER_KEYS = {"qwen_image": "qwen25_7b", "lumina2": "qwen3_4b"}


class DreamMixTestTextEncoderLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_name": (folder_paths.get_filename_list("text_encoders"),),
                "type": (list(ENCODER_KEYS),),
            }
        }

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, clip_name, type):
        path = folder_paths.get_full_path_or_raise("text_encoders", clip_name)
        state_dict, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
        config = json.loads(metadata["dreammix_test_config"])
        clip = comfy.sd.load_text_encoder_state_dicts(
            [state_dict],
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
            clip_type=getattr(comfy.sd.CLIPType, type.upper()),
            model_options={f"{ENCODER_KEYS[type]}_model_config": config},
        )
        return (clip,)


NODE_CLASS_MAPPINGS = {"DreamMixTestTextEncoderLoader": DreamMixTestTextEncoderLoader}
