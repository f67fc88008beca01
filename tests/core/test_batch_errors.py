"""Every user-facing error of the batch command, triggered as a user would and checked word for word (no ComfyUI).

Most go through `main([...])`: its exit code and what it prints to stderr. Server answers come from FakeComfy,
ComfyUI itself from a fake folder with a main.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from fake_comfy import FakeComfy
from PIL import Image
from tiny_metric_models import save_tiny_metric_models

import dreammix_batch as batch
from dreammix_batch.in_process import start_comfyui
from dreammix_batch.workflow import Options, load_workflow, prepare_graph
from dreammix_core.errors import DreamMixInputError

WORKFLOWS = Path(batch.DEFAULT_WORKFLOW).parent
UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing answers; these errors come before any request


def write_case(cases: Path, name: str = "c0", refs: int = 0) -> Path:
    """A well-formed case: a 64x48 scene, a mask with a white box, a prompt; `refs` reference photos."""
    folder = cases / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "scene.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[8:32, 8:40] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "prompt.txt").write_text("a photo of a sks dog")
    for index in range(refs):
        (folder / "references").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "references" / f"{index}.png")
    return folder


def run(tmp_path: Path, *extra: str, cases: Path | None = None) -> int:
    """`dreammix-batch CASES --out OUT EXTRA...` on the cases in tmp_path/cases (written when absent)."""
    if cases is None:
        cases = tmp_path / "cases"
        if not cases.exists():
            write_case(cases)
    return batch.main([str(cases), "--out", str(tmp_path / "out"), *extra])


def said(err: str) -> list[str]:
    """The lines of stderr without progress bars ('DreamMix batch:  50%|#####     | 1/2 ...', tqdm's)."""
    return [line for line in err.splitlines() if line and not re.match(r"[\w ]+: +\d+%\|", line)]


def edited_workflow(tmp_path: Path, edit) -> Path:
    """The shipped one-shot API workflow, changed by `edit(graph)`, saved as tmp_path/workflow.json."""
    graph = json.loads(batch.DEFAULT_WORKFLOW.read_text())
    edit(graph)
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph))
    return path


@pytest.fixture
def serve():
    """Starts FakeComfy servers with the given options; closes them after the test."""
    servers = []

    def start(**options) -> FakeComfy:
        servers.append(FakeComfy(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- arguments, cases and workflows: refused before anything runs (exit 2) --------------------------


@pytest.mark.parametrize("seeds", [["-1"], [","], ["0", "-2"]])
def test_seeds_below_zero_or_none_are_refused(tmp_path, capsys, seeds):
    assert run(tmp_path, "--server", UNREACHABLE, "--no-metrics", "--seeds", *seeds) == 2
    assert capsys.readouterr().err == "error: --seeds needs at least one seed, each 0 or more.\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_cases_folder_is_named(tmp_path, capsys):
    assert run(tmp_path, "--server", UNREACHABLE, cases=tmp_path / "my_cases") == 2
    assert capsys.readouterr().err == f"error: The cases folder '{tmp_path / 'my_cases'}' does not exist.\n"


def test_a_missing_references_folder_is_named(tmp_path, capsys):
    assert run(tmp_path, "--server", UNREACHABLE, "--references", str(tmp_path / "refs")) == 2
    assert capsys.readouterr().err == f"error: The references folder '{tmp_path / 'refs'}' does not exist.\n"


def test_case_files_without_case_folders_say_how_to_lay_them_out(tmp_path, capsys):
    """The files of one case put straight into the cases folder, and a hidden folder: no case folder."""
    cases = write_case(tmp_path, "cases")
    (cases / ".thumbnails").mkdir()
    assert run(tmp_path, "--server", UNREACHABLE, cases=cases) == 2
    assert capsys.readouterr().err == (
        f"error: '{cases}' holds no case folders: put each case in <cases>/<name>/ with scene.png, mask.png, "
        "prompt.txt.\n"
    )


def test_an_unreadable_scene_is_named(tmp_path, capsys):
    """A Git LFS pointer where the image should be (cloned without git lfs)."""
    scene = write_case(tmp_path / "cases") / "scene.png"
    scene.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n")
    assert run(tmp_path, "--server", UNREACHABLE) == 2
    assert capsys.readouterr().err == (
        f"error: Malformed case folders:\n  {scene}: not a readable image (cannot identify image file '{scene}')\n"
    )


def test_an_all_black_mask_is_named(tmp_path, capsys):
    mask = write_case(tmp_path / "cases") / "mask.png"
    Image.new("L", (64, 48), 0).save(mask)
    assert run(tmp_path, "--server", UNREACHABLE) == 2
    assert capsys.readouterr().err == (
        f"error: Malformed case folders:\n  {mask}: is empty (no white pixel marks where the subject goes)\n"
    )


def test_a_missing_workflow_is_named(tmp_path, capsys):
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(tmp_path / "nope.json")) == 2
    assert capsys.readouterr().err == f"error: The workflow '{tmp_path / 'nope.json'}' does not exist.\n"


def test_a_workflow_that_is_not_json_is_named(tmp_path, capsys):
    (tmp_path / "cut.json").write_text('{\n  "1": {')
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(tmp_path / "cut.json")) == 2
    assert capsys.readouterr().err == (
        f"error: The workflow '{tmp_path / 'cut.json'}' is not JSON: "
        "Expecting property name enclosed in double quotes: line 2 column 9 (char 10)\n"
    )


def test_the_granular_workflow_has_no_dreammix_inpaint_for_the_batch(tmp_path, capsys):
    granular = WORKFLOWS / "dreammix_inpaint_granular.json"
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(granular)) == 2
    assert capsys.readouterr().err == (
        f"error: the workflow '{granular}' must have exactly one DreamMixInpaint node; it has 0.\n"
    )


def test_two_dreammix_inpaint_nodes_are_refused(tmp_path, capsys):
    path = edited_workflow(tmp_path, lambda graph: graph.update({"7": graph["5"]}))
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(path)) == 2
    assert (
        capsys.readouterr().err
        == f"error: the workflow '{path}' must have exactly one DreamMixInpaint node; it has 2.\n"
    )


def test_a_positive_prompt_from_another_node_is_refused(tmp_path, capsys):
    """The attribute-edit workflow's DreamMixInpaint gets its positive from TAS: the batch cannot set the prompt."""
    attribute_edit = WORKFLOWS / "dreammix_attribute_edit.json"
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(attribute_edit)) == 2
    assert capsys.readouterr().err == (
        f"error: In the workflow '{attribute_edit}', DreamMixInpaint's positive must come from a CLIPTextEncode node.\n"
    )


def test_a_scaled_scene_with_a_second_image_loader_is_refused(tmp_path, capsys):
    """The scene goes through ImageScale and the mask comes from another LoadImage: which one is the scene?"""

    def edit(graph):
        graph["7"] = {"class_type": "LoadImage", "inputs": {"image": "mask.png"}}
        graph["8"] = {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["4", 0],
                "upscale_method": "lanczos",
                "width": 1024,
                "height": 768,
                "crop": "disabled",
            },
        }
        graph["5"]["inputs"].update(image=["8", 0], mask=["7", 1])

    path = edited_workflow(tmp_path, edit)
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(path)) == 2
    assert (
        capsys.readouterr().err == f"error: the workflow '{path}' needs one LoadImage node for the scene; it has 2.\n"
    )


def test_a_workflow_that_only_previews_is_refused(tmp_path, capsys):
    path = edited_workflow(tmp_path, lambda graph: graph["6"].update(class_type="PreviewImage"))
    assert run(tmp_path, "--server", UNREACHABLE, "--workflow", str(path)) == 2
    assert capsys.readouterr().err == f"error: the workflow '{path}' needs a SaveImage node fed by DreamMixInpaint.\n"


@pytest.mark.parametrize(
    "option, says",
    [
        (["--ckpt", "mine.safetensors"], "--ckpt needs a workflow with exactly one CheckpointLoaderSimple node."),
        (
            ["--lora", "subject.safetensors"],
            "--lora needs a workflow with a LoRA loader or exactly one CheckpointLoaderSimple node to add one after.",
        ),
    ],
)
def test_ckpt_and_lora_need_a_simple_checkpoint_loader(tmp_path, capsys, option, says):
    """A workflow that loads its checkpoint with CheckpointLoader (with a config) has no CheckpointLoaderSimple."""

    def edit(graph):
        graph["1"].update(class_type="CheckpointLoader")
        graph["1"]["inputs"]["config_name"] = "v1-inference.yaml"

    path = edited_workflow(tmp_path, edit)
    assert run(tmp_path, "--server", UNREACHABLE, "--no-metrics", "--workflow", str(path), *option) == 2
    assert capsys.readouterr().err == f"error: {says}\n"


@pytest.mark.parametrize("name", ["dreammix_qwen_image_inpaint", "dreammix_z_image_inpaint"])
def test_lora_sets_the_loader_of_a_workflow_without_a_checkpoint_loader(name):
    """The Qwen-Image and Z-Image workflows load their model with Load Diffusion Model and hold their own
    LoraLoaderModelOnly: --lora names the file there, and no second loader is inserted."""
    template = load_workflow(WORKFLOWS / f"{name}.json")
    options = Options(lora="mine.safetensors", lora_strength=0.8)
    graph = prepare_graph(template, "scene.png", "a sks dog", 3, "out", options)
    (loader,) = [node for node in graph.values() if node["class_type"] == "LoraLoaderModelOnly"]
    assert (loader["inputs"]["lora_name"], loader["inputs"]["strength_model"]) == ("mine.safetensors", 0.8)
    assert set(graph) == set(template)


# --- what the server lacks: refused before any prompt is queued (exit 1) ---------------------------


def test_a_server_without_the_pack_is_told_to_install_it(tmp_path, capsys, serve):
    server = serve(node_info={"DreamMixInpaint": {}})
    assert run(tmp_path, "--server", server.url, "--no-metrics") == 1
    assert capsys.readouterr().err == (
        f"error: The server at {server.url} has no node 'DreamMixInpaint': install ComfyUI-DreamMix there.\n"
    )
    assert not server.prompts and not server.uploads


def test_a_server_without_a_core_node_is_named(tmp_path, capsys, serve):
    server = serve(node_info={"CheckpointLoaderSimple": {}})
    assert run(tmp_path, "--server", server.url, "--no-metrics") == 1
    assert capsys.readouterr().err == f"error: The server at {server.url} has no node 'CheckpointLoaderSimple'.\n"
    assert not server.prompts


@pytest.mark.parametrize(
    ("option", "node_info", "says"),
    [
        (  # the list form of a combo input
            ["--ckpt", "mine.safetensors"],
            {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["a.safetensors", "b.safetensors"]]}}}},
            "has no ckpt 'mine.safetensors'; it has: a.safetensors, b.safetensors.",
        ),
        (  # the V3 COMBO form, no LoRA at all
            ["--lora", "subject.safetensors"],
            {"LoraLoader": {"input": {"required": {"lora_name": ["COMBO", {"options": []}]}}}},
            "has no lora 'subject.safetensors'; it has: none.",
        ),
    ],
)
def test_a_checkpoint_or_lora_the_server_lacks_is_named_with_what_it_has(
    tmp_path, capsys, serve, option, node_info, says
):
    server = serve(node_info=node_info)
    assert run(tmp_path, "--server", server.url, "--no-metrics", *option) == 1
    assert capsys.readouterr().err == f"error: The server at {server.url} {says}\n"
    assert not server.prompts


# --- a case failing on the server: reported, the batch goes on (exit 1) -----------------------------

REFUSAL = {  # ComfyUI's answer to a workflow that fails validation
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    },
    "node_errors": {
        "5": {
            "errors": [
                {
                    "type": "value_smaller_than_min",
                    "message": "Value 0 smaller than min of 1",
                    "details": "steps",
                    "extra_info": {"input_name": "steps"},
                }
            ],
            "dependent_outputs": ["6"],
            "class_type": "DreamMixInpaint",
        }
    },
}
STARTED = ["execution_start", {"prompt_id": "0", "timestamp": 1}]


@pytest.mark.parametrize(
    ("options", "extra", "says"),
    [
        (
            {"refusal": REFUSAL},
            ["--steps", "0"],
            "{url} refused the workflow: Prompt outputs failed validation | "
            "5 (DreamMixInpaint): Value 0 smaller than min of 1: steps",
        ),
        (
            {
                "status": {
                    "status_str": "error",
                    "completed": False,
                    "messages": [
                        STARTED,
                        ["execution_interrupted", {"prompt_id": "0", "node_id": "5", "node_type": "DreamMixInpaint"}],
                    ],
                }
            },
            [],
            "the prompt was interrupted on {url}",
        ),
        (
            {"status": {"status_str": "error", "completed": False, "messages": [STARTED]}},
            [],
            'the prompt failed on {url}: {{"status_str": "error", "completed": false, "messages": '
            '[["execution_start", {{"prompt_id": "0", "timestamp": 1}}]]}}',
        ),
        ({"finished": threading.Event()}, ["--timeout", "0.5"], "the prompt was still running on {url} after 0.5 s"),
        ({"outputs": {}}, [], "the workflow ran on {url} but node 6 saved no image"),
        ({"view_missing": True}, [], "HTTPError: HTTP Error 404: Not Found"),
    ],
    ids=["refused", "interrupted", "failed", "still-running", "no-image", "view-404"],
)
def test_a_case_the_server_fails_is_reported(tmp_path, capsys, serve, options, extra, says):
    server = serve(**options)
    assert run(tmp_path, "--server", server.url, "--no-metrics", *extra) == 1
    assert said(capsys.readouterr().err) == [f"case c0 failed: {says.format(url=server.url)}"]
    assert len(server.prompts) == 1
    assert not (tmp_path / "out" / "images" / "c0" / "seed0.png").exists()


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, serve):
    """Ctrl-C while seed 0 runs: the runner stops queueing, says how to resume, waits for seed 0 and saves it (on
    Python < 3.13 an interrupted `Thread.join` took the running worker for finished: python/cpython#90882)."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    stop = threading.Event()
    server = serve(finished=stop)  # the running image finishes once the runner has been told to stop
    cases = batch.load_cases(write_case(tmp_path / "cases").parent)
    template = batch.load_workflow(batch.DEFAULT_WORKFLOW)

    def press_ctrl_c() -> None:
        if server.prompted.wait(10):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        report = batch.run_cases(cases, [0, 1], tmp_path / "out", [server.url], template, stop=stop)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C reached the caller of run_cases")
    assert stop.is_set()
    assert said(capsys.readouterr().err) == [
        "Stopping after the images now running; run the same command again to resume."
    ]
    assert len(server.prompts) == 1 and not report.failed and report.interrupted
    assert [p.name for p in (tmp_path / "out" / "images" / "c0").iterdir()] == ["seed0.png"]


def test_an_interrupted_run_exits_with_130(tmp_path, monkeypatch, capsys):
    """What a shell reports for a command stopped by Ctrl-C, so a script does not take the batch for finished."""
    monkeypatch.setattr(batch.cli, "run_cases", lambda *args, **kwargs: batch.runner.RunReport(interrupted=True))
    assert run(tmp_path, "--server", UNREACHABLE, "--no-metrics") == 130


# --- scoring finished images ----------------------------------------------------------------------


def test_a_result_of_another_size_than_its_mask_stops_the_scoring(tmp_path, capsys):
    """A finished 32x32 image for a 64x48 case (a scene replaced after its run): scored without a server."""
    clip, dino = save_tiny_metric_models(tmp_path / "models")
    write_case(tmp_path / "cases", refs=1)
    finished = tmp_path / "out" / "images" / "c0" / "seed0.png"
    finished.parent.mkdir(parents=True)
    Image.new("RGB", (32, 32), (90, 120, 60)).save(finished)
    extra = ["--clip-model", str(clip), "--dino-model", str(dino), "--class-word", "dog", "--device", "cpu"]
    assert run(tmp_path, "--server", UNREACHABLE, *extra) == 1
    assert said(capsys.readouterr().err) == [
        "error while scoring: The mask is 64x48 but the image is 32x32: give the mask the image was inpainted with."
    ]
    assert not (tmp_path / "out" / "results.csv").exists()


# --- ComfyUI started in this process (--comfyui) ---------------------------------------------------

FAKE_MAIN = """
import asyncio

import fake_comfyui_control as control


def start_comfyui():
    control.loop = asyncio.new_event_loop()
    return control.loop, None, control.start_all
"""


@pytest.fixture
def comfyui(tmp_path, monkeypatch):
    """A folder that looks like ComfyUI (comfy/ and main.py); main.py's start_comfyui() serves with
    `control.start_all`, set by the test. The loop is closed after the test, sys.argv and sys.path restored."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    control = types.ModuleType("fake_comfyui_control")
    control.loop, control.release = None, threading.Event()
    monkeypatch.setitem(sys.modules, "fake_comfyui_control", control)
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "main.py").write_text(FAKE_MAIN)
    yield root, control
    control.release.set()
    for thread in threading.enumerate():
        if thread.name == "comfyui":
            thread.join(10)
    if control.loop is not None:
        control.loop.close()


def test_a_comfyui_without_start_comfyui_is_told_to_update(tmp_path, capsys, comfyui):
    root, _ = comfyui
    (root / "main.py").write_text('print("ComfyUI 0.3.40")\n')  # before 0.3.64: main.py has no start_comfyui()
    assert run(tmp_path, "--comfyui", str(root), "--no-metrics") == 1
    assert capsys.readouterr().err == (
        f"error: The ComfyUI in '{root.resolve()}' has no start_comfyui(); update it to 0.3.64 or newer.\n"
    )


def test_a_comfyui_that_stops_while_starting_points_to_its_messages(tmp_path, capsys, comfyui):
    root, control = comfyui

    async def start_all():
        print("Port 8188 is in use.", file=sys.stderr)

    control.start_all = start_all
    assert run(tmp_path, "--comfyui", str(root), "--no-metrics") == 1
    assert capsys.readouterr().err == (
        f"Port 8188 is in use.\nerror: ComfyUI in '{root.resolve()}' stopped while starting; see its messages above.\n"
    )


def test_a_comfyui_that_never_answers_is_given_up_on(comfyui):
    root, control = comfyui

    async def start_all():
        await asyncio.to_thread(control.release.wait)  # serves nothing until the test ends

    control.start_all = start_all
    with pytest.raises(DreamMixInputError) as caught:
        start_comfyui(root, timeout=1)
    assert str(caught.value) == f"ComfyUI in '{root.resolve()}' did not answer within 1 s."
