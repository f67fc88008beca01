"""ComfyUI-DreamMix: the DreamMix method (arXiv 2411.17223) as ComfyUI nodes.

ComfyUI imports this folder as a custom node package and calls `comfy_entrypoint` (V3 API).
The method itself lives in `dreammix_core`, which imports nothing from ComfyUI.
"""

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from .nodes.attributes import NODES as ATTRIBUTE_NODES
from .nodes.evaluation import NODES as EVALUATION_NODES
from .nodes.inpainting import NODES as INPAINT_NODES
from .nodes.training import NODES as TRAINING_NODES


class DreamMixExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [*INPAINT_NODES, *ATTRIBUTE_NODES, *TRAINING_NODES, *EVALUATION_NODES]


async def comfy_entrypoint() -> DreamMixExtension:
    return DreamMixExtension()
