"""One scene and what its mask decides before any sampling.

The one-shot pipeline derives it once per scene; the granular nodes pass it from DreamMix Local Crop through
Local Replace to Composite (as Crop&Stitch passes its stitcher), so the later nodes need neither the image, the
mask nor the feather wired to them again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch

from ..errors import DreamMixInputError
from .blend import feather_mask
from .region import SIZE_MULTIPLE, CropRegion, as_float32, compute_region, validate_image_and_mask
from .window import Window, cut, gch_window


@dataclass(frozen=True, eq=False)
class Scene:
    image: torch.Tensor
    """(1, H, W, C) float32: the original."""
    binary: torch.Tensor
    """(1, H, W) binary mask: 1 is regenerated."""
    feather: int
    """Width of the ramp outside the mask for the paste at the switch and the final composite."""
    region: CropRegion
    """LCG's crop box and working size."""
    window: Window | None = None
    """GCH's part of the scene (None: the whole scene)."""

    @cached_property
    def alpha(self) -> torch.Tensor:
        """The feathered mask (1, H, W)."""
        return feather_mask(self.binary, self.feather)

    def windowed(self, global_max_area: float) -> Scene:
        """The scene with its GCH window for a budget of `global_max_area` × the LCG working area."""
        working_area = self.region.width * self.region.height
        return replace(self, window=gch_window(self.binary, working_area, global_max_area, self.feather))

    def group(self) -> tuple[int, ...]:
        """Scenes of one group share a sampler call per stage: equal LCG working size and GCH window size."""
        return (self.region.width, self.region.height, *cut(self.binary, self.window).shape[1:])

    def rewired(
        self, image: torch.Tensor | None = None, mask: torch.Tensor | None = None, feather: int | None = None
    ) -> Scene:
        """The scene with the image, mask or feather a node is given again (workflows saved before the scene
        record wired them to every node); each replaces the scene's own and must be of the scene's size."""
        scene = self
        if image is not None:
            self._check_size(image.shape[2], image.shape[1])
            scene = replace(scene, image=as_float32(image))
        if mask is not None:
            scene = replace(scene, binary=validate_image_and_mask(scene.image, mask))
        if feather is not None:
            scene = replace(scene, feather=feather)
        return scene

    def _check_size(self, width: int, height: int) -> None:
        if (width, height) != (self.region.image_width, self.region.image_height):
            raise DreamMixInputError(
                f"The image is {width}x{height} but DreamMix Local Crop cut its region from a "
                f"{self.region.image_width}x{self.region.image_height} image: connect the same image."
            )


def prepare_scene(
    image: torch.Tensor, mask: torch.Tensor, context_factor: float, resolution: int, feather: int
) -> Scene:
    """A single image (1, H, W, C) and its mask as a scene: the mask binarised, LCG's crop box (holding the mask and
    its feather) and working size for `resolution`; no GCH window yet."""
    binary = validate_image_and_mask(image, mask)
    region = compute_region(binary, context_factor, resolution, SIZE_MULTIPLE, min_margin=feather)
    return Scene(as_float32(image), binary, feather, region)
