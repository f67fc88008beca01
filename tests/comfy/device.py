"""Which device the ComfyUI test tier runs ComfyUI on: the CPU, unless DREAMMIX_TEST_DEVICE=cuda.

One rule for the test server (server.py) and the in-process probes, which import this module from their own
folder. The tier runs on CPU everywhere (CI has no GPU); benchmarks/gpu_check.sh sets cuda to run the same tests
on a GPU, where device mismatches show.
"""

from __future__ import annotations

import os

DEVICE_VARIABLE = "DREAMMIX_TEST_DEVICE"
DEVICES = ("cpu", "cuda")


def comfyui_device_flags() -> list[str]:
    """ComfyUI's command-line flags for the chosen device: `--cpu`, or none (ComfyUI then takes the GPU)."""
    device = os.environ.get(DEVICE_VARIABLE, "cpu")
    if device not in DEVICES:
        raise SystemExit(f"{DEVICE_VARIABLE} must be one of {', '.join(DEVICES)}, got {device!r}")
    return ["--cpu"] if device == "cpu" else []
