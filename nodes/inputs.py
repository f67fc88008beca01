"""Inputs several nodes declare, each described once. Defaults and tooltips stay what each node had,
so workflows saved with earlier versions load unchanged."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import comfy.samplers
from comfy_api.latest import io

from ..dreammix_core.inpainting.blend import FEATHER
from ..dreammix_core.inpainting.region import RELEASED_CONTEXT_FACTOR
from ..dreammix_core.inpainting.schedule import RELEASED_CODE_LAMBDA, StageSplit

MAX_RESOLUTION = 2048
"""The largest inpainting resolution offered: twice SDXL's and FLUX's native side; beyond it no family
generates coherent content and the pre-fill alone runs for minutes."""
MAX_TRAINING_RESOLUTION = 4096
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def seed(tooltip: str, control_after_generate: bool) -> io.Int.Input:
    return io.Int.Input(
        "seed", default=0, min=0, max=SEED_MAX, control_after_generate=control_after_generate, tooltip=tooltip
    )


def resolution(tooltip: str, maximum: int = MAX_RESOLUTION) -> io.Int.Input:
    """A working side; 0 stands for the connected model family's native size."""
    return io.Int.Input("resolution", default=0, min=0, max=maximum, step=64, tooltip=tooltip)


def steps(default: int, maximum: int, tooltip: str) -> io.Int.Input:
    return io.Int.Input("steps", default=default, min=1, max=maximum, tooltip=tooltip)


def cfg(default: float, maximum: float, tooltip: str, rounding: float | None = None) -> io.Float.Input:
    return io.Float.Input("cfg", default=default, min=0.0, max=maximum, step=0.1, round=rounding, tooltip=tooltip)


def sampler(default: str, tooltip: str) -> io.Combo.Input:
    return io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default=default, tooltip=tooltip)


def scheduler(default: str, tooltip: str) -> io.Combo.Input:
    return io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default=default, tooltip=tooltip)


def switch() -> io.Float.Input:
    """The paper's λ, named `switch` on the nodes (the core calls it `lam`)."""
    return io.Float.Input(
        "switch",
        default=round(RELEASED_CODE_LAMBDA, 3),
        min=0.0,
        max=1.0,
        step=0.001,
        round=0.001,
        tooltip="The paper's λ: share of the steps given to global harmonization. 0 = local generation only, "
        "1 = plain full-image inpaint. 0.333 switches at step 20 of 30 like the released code; "
        "the paper reports λ = 0.7.",
    )


def context() -> io.Float.Input:
    return io.Float.Input(
        "context_factor",
        default=RELEASED_CONTEXT_FACTOR,
        min=0.0,
        max=1.0,
        step=0.01,
        tooltip="The local crop covers at least this share of the image's width and height "
        "(released notebook: 0.5; the code's signature default: 0.618).",
    )


def feather() -> io.Int.Input:
    return io.Int.Input(
        "feather",
        default=FEATHER,
        min=0,
        max=256,
        tooltip="Pixels of linear ramp outside the mask when pasting; beyond it the original pixels come back exactly.",
    )


def global_max_area(default: float, tooltip: str) -> io.Float.Input:
    """GCH's pixel budget, in units of the LCG working area (dreammix_core.inpainting.window); optional, so API
    workflows saved before it still validate (they get `default`, the node's keyword default)."""
    return io.Float.Input(
        "global_max_area", default=default, min=0.0, max=64.0, step=0.5, optional=True, tooltip=tooltip
    )


def variations() -> io.Int.Input:
    """Results per scene from one batched sampler call per stage; optional, so saved workflows still validate."""
    return io.Int.Input(
        "variations",
        default=1,
        min=1,
        max=64,
        optional=True,
        tooltip="Results per scene, sampled as one batch (one sampler call per stage, much cheaper than separate "
        "runs on a GPU). The first is the single run's result; the others use ComfyUI's batch noise from the seed.",
    )


def image(tooltip: str = "The scene to inpaint (one image).") -> io.Image.Input:
    return io.Image.Input("image", tooltip=tooltip)


def mask() -> io.Mask.Input:
    return io.Mask.Input("mask", tooltip="Where the subject goes. Grey values of 0.5 or more count as masked.")


def sampling() -> list:
    """The settings LCG and GCH must share: one schedule, split at the switch."""
    return [
        seed("Noise seed. GCH uses the next seed, so its fresh noise differs from LCG's.", control_after_generate=True),
        steps(30, 10000, "Total steps of the one schedule LCG and GCH share (released code: 30)."),
        cfg(4.0, 100.0, "Classifier-free guidance scale (released code: 4).", rounding=0.01),
        sampler("dpmpp_2m_sde", "Any ComfyUI sampler (released code: DPM++ 2M SDE)."),
        scheduler("karras", "Any ComfyUI scheduler (released code: Karras)."),
        switch(),
    ]


@dataclass(frozen=True)
class Sampling:
    """The values of the `sampling()` inputs."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    switch: float

    @classmethod
    def pop_from(cls, values: dict[str, Any]) -> Sampling:
        """The sampling values taken out of a node's inputs; the rest stay in `values`."""
        return cls(**{field.name: values.pop(field.name) for field in fields(cls)})

    @property
    def split(self) -> StageSplit:
        return StageSplit.of(self.steps, self.switch)


def model_and_prompts() -> list:
    return [
        io.Model.Input("model", tooltip="The diffusion model: ordinary or 9-channel inpainting, SD1.5 or SDXL family."),
        io.Conditioning.Input("positive", tooltip="Prompt conditioning, e.g. 'a photo of a sks backpack'."),
        io.Conditioning.Input("negative", tooltip="Negative prompt conditioning."),
        io.Vae.Input("vae", tooltip="The VAE of the model."),
    ]
