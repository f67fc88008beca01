"""Every shipped workflow under ComfyUI's --fp16-intermediates: fp16 IMAGE and MASK tensors between nodes.

CPU torch cannot resize fp16 images with antialiasing, so before the pack computed in float32 the
first DreamMix node failed with a raw torch error. The background must stay exact: every fp16 value
converts to float32 and back unchanged.
"""

from __future__ import annotations

import pytest
import test_attribute_workflow as attribute
import test_training_workflow as training
from server import ComfyServer
from test_workflows import COVERING_CASES, Runs, assert_background_exact, check_run, saved_image, scene, subject_mask
from workflow_format import ObjectInfo


@pytest.fixture(scope="module")
def object_info(fp16_server: ComfyServer) -> ObjectInfo:
    return fp16_server.object_info()


@pytest.fixture(scope="module")
def runs(fp16_server: ComfyServer) -> Runs:
    return Runs(fp16_server)


@pytest.mark.parametrize("case", COVERING_CASES, ids=str)
def test_inpaint_workflows_keep_background_exact(case, runs: Runs, object_info: ObjectInfo) -> None:
    check_run(case, runs, object_info)


def test_attribute_workflow_keeps_background_exact(fp16_server: ComfyServer, object_info: ObjectInfo) -> None:
    graph = attribute.attribute_graph(fp16_server, "tiny_sd15", "fp16-attribute")
    attribute.check_run(attribute.run(fp16_server, graph), object_info)


def test_training_workflow_keeps_background_exact(fp16_server: ComfyServer) -> None:
    graph = training.training_graph(fp16_server, "fp16-train")
    entry = fp16_server.run(graph)
    assert training.lora_path(fp16_server, "fp16-train").is_file()
    assert_background_exact(saved_image(fp16_server, entry, graph), scene(*training.SIZE), subject_mask(*training.SIZE))
