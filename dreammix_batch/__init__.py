"""Headless batch runs of a DreamMix API workflow over a folder of cases, with the paper's metrics.

    dreammix-batch CASES --out OUT --server http://127.0.0.1:8188 [--server ...]
        [--workflow FILE] [--seeds 0 1 2] [--ckpt NAME] [--lora NAME]
        [--references DIR] [--class-word WORD] [--clip-model SRC] [--dino-model SRC]
    dreammix-batch CASES --out OUT --comfyui PATH [--ckpt NAME]     (ComfyUI run in this process)

Each case is a folder `CASES/<name>/` holding `scene.png`, `mask.png` (white = where the subject
goes) and `prompt.txt`; optionally `references/` (photos of the subject) and `class_word.txt`.
Every case folder is checked before anything runs. The scene goes to each ComfyUI server as an RGBA
PNG through POST /upload/image, its alpha the inverted mask (ComfyUI's LoadImage gives MASK =
1 - alpha), and the workflow runs once per seed. Several servers share the cases, one worker thread
each. A result already in `OUT/images/<case>/seed<seed>.png` is not run again, so a stopped batch
resumes where it stopped.

The results table (`OUT/results.csv`, `OUT/results.md`: one row per case and the mean, CLIP-T /
CLIP-I / DINO as in the paper's Table 1) is scored here, in the client's python, whenever the
metric models are at hand (a local folder, or the local Hugging Face cache); otherwise its columns
stay empty and a note says why.

This package is a client of ComfyUI, not part of the method: `dreammix_core` never imports it.
"""

from .cases import Case, load_cases, scene_with_alpha
from .cli import main
from .client import ComfyClient, ServerError
from .results import score_cases, table_markdown, write_results
from .runner import image_path, run_cases
from .workflow import DEFAULT_WORKFLOW, Options, find_roles, load_workflow, prepare_graph

__all__ = [
    "DEFAULT_WORKFLOW",
    "Case",
    "ComfyClient",
    "Options",
    "ServerError",
    "find_roles",
    "image_path",
    "load_cases",
    "load_workflow",
    "main",
    "prepare_graph",
    "run_cases",
    "scene_with_alpha",
    "score_cases",
    "table_markdown",
    "write_results",
]
