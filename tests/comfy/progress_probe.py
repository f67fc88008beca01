"""Progress, previews and Cancel of DreamMix Inpaint on a real ComfyUI model; prints one JSON line.

usage: python progress_probe.py COMFYUI_PATH PACK_DIR CHECKPOINT
The progress hook is installed the way ComfyUI's server installs its own (main.py): it receives
every progress update with its preview, and raises ComfyUI's interruption exception once Cancel
was pressed, which is how the Cancel button stops a node.
"""

from __future__ import annotations

import asyncio
import json
import sys

from device import comfyui_device_flags

STEPS = 6
SWITCH = 0.5  # LCG steps 0-2, GCH steps 3-5


def main(comfyui: str, pack_dir: str, checkpoint: str) -> dict:
    sys.path.insert(0, comfyui)
    sys.argv = [sys.argv[0], *comfyui_device_flags(), "--preview-method", "latent2rgb"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    import torch

    import nodes

    if not asyncio.run(nodes.load_custom_node(pack_dir)):
        raise SystemExit("the pack did not load")
    inpaint = nodes.NODE_CLASS_MAPPINGS["DreamMixInpaint"]
    model, clip, vae = comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=True, output_clip=True)[:3]
    positive = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a sks backpack"))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    image = torch.rand(1, 192, 256, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 192, 256)
    mask[:, 60:130, 90:170] = 1

    updates: list[tuple[int, int, bool]] = []
    cancel_after: list[int] = []

    def hook(value, total, preview, *args, **kwargs):
        updates.append((int(value), int(total), preview is not None))
        if cancel_after and len(updates) >= cancel_after[0]:
            comfy.model_management.interrupt_current_processing(True)
        comfy.model_management.throw_exception_if_processing_interrupted()

    comfy.utils.set_progress_bar_global_hook(hook)

    # Every model call's sigma and cond/uncond entries, through ComfyUI's own wrapper hook on a clone of the MODEL.
    calls: list[tuple[float, int]] = []

    def record(apply_model, args):
        calls.extend((float(args["timestep"][0]), int(entry)) for entry in args["cond_or_uncond"])
        return apply_model(args["input"], args["timestep"], **args["c"])

    recording = model.clone()
    recording.set_model_unet_function_wrapper(record)

    def run() -> None:
        sampling = {"seed": 1, "steps": STEPS, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal"}
        scene = {"context_factor": 0.5, "resolution": 256, "feather": 32}
        inpaint.execute(recording, positive, negative, vae, image, mask, **sampling, switch=SWITCH, **scene)

    run()
    full = list(updates)
    model_calls = sorted(calls)
    schedule = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)
    stopped_after = {}
    for stage, after in (("local", 2), ("global", len(full) // 2 + 2)):  # LCG's 2nd step, GCH's 2nd step
        updates.clear()
        cancel_after[:] = [after]
        try:
            run()
        except comfy.model_management.InterruptProcessingException:
            stopped_after[stage] = len(updates)
    cancel_after.clear()

    # Cancel pressed while Local Crop pre-fills a crop at the largest working resolution: the fill checks.
    crop = nodes.NODE_CLASS_MAPPINGS["DreamMixLocalCrop"]
    comfy.model_management.interrupt_current_processing(True)
    try:
        crop.execute(image, mask, 2048, 0.5, 32)
        crop_cancelled = False
    except comfy.model_management.InterruptProcessingException:
        crop_cancelled = True
    finally:
        comfy.model_management.interrupt_current_processing(False)
    return {
        "updates": full,
        "stopped_after": stopped_after,
        "crop_cancelled": crop_cancelled,
        "model_calls": model_calls,
        "schedule": [float(sigma) for sigma in schedule],
    }


if __name__ == "__main__":
    print("PROGRESS_PROBE " + json.dumps(main(*sys.argv[1:4])))
