"""DreamMix Subject Photos: up to six photos with their masks as lists, each photo at its own size.

ComfyUI core cannot keep photos of different sizes together (Image Batch rescales them) nor batch
masks, yet subject training wants each photo whole. This node outputs ComfyUI lists, which list-input
nodes (DreamMix Train Subject LoRA, DreamMix Attribute Refine) receive in one call.
"""

from __future__ import annotations

import comfy.utils
import torch
from comfy_api.latest import io

from ...dreammix_core.training.subject_photos import collect_photos

CATEGORY = "DreamMix/training"
PHOTOS = 6


def _photo_inputs(number: int) -> list[io.Input]:
    optional = number > 1
    return [
        io.Image.Input(
            f"image_{number}",
            optional=optional,
            tooltip=f"Subject photo {number} (one image, any size), e.g. from Load Image.",
        ),
        io.Mask.Input(
            f"mask_{number}",
            optional=optional,
            tooltip="Its mask, the photo's size: Load Image's MASK output (alpha) or a segmentation node's mask.",
        ),
    ]


class DreamMixSubjectPhotos(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamMixSubjectPhotos",
            display_name="DreamMix Subject Photos",
            category=CATEGORY,
            description="Collects the subject's photos and masks for DreamMix Train Subject LoRA as lists, so photos "
            "of different sizes are trained on whole, and checks each pair.",
            inputs=[
                *(photo for number in range(1, PHOTOS + 1) for photo in _photo_inputs(number)),
                io.Boolean.Input(
                    "invert_masks",
                    default=True,
                    tooltip="Load Image's MASK output is 1 where the PNG is transparent, so a photo whose alpha cuts "
                    "out the subject needs inverting. Off when the masks come from a segmentation node (1 on the "
                    "subject).",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "images",
                    display_name="images",
                    is_output_list=True,
                    tooltip="The photos as a list, each at its own size: for Train Subject LoRA and Attribute Refine.",
                ),
                io.Mask.Output(
                    "masks",
                    display_name="masks",
                    is_output_list=True,
                    tooltip="Their masks as a list, 1 on the subject, in the same order and sizes.",
                ),
                io.Image.Output(
                    "preview",
                    display_name="preview",
                    tooltip="All photos in one batch at the first photo's size (the others resized and "
                    "centre-cropped), for nodes that take a batch.",
                ),
            ],
        )

    @classmethod
    def execute(cls, invert_masks: bool, **photos: torch.Tensor) -> io.NodeOutput:
        pairs = [(photos.get(f"image_{n}"), photos.get(f"mask_{n}")) for n in range(1, PHOTOS + 1)]
        images, masks = collect_photos(pairs, invert_masks)
        height, width = images[0].shape[1:3]
        preview = torch.cat(
            [
                comfy.utils.common_upscale(image.movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
                for image in images
            ]
        )
        return io.NodeOutput(images, masks, preview)
