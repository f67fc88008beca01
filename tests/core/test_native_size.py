"""Resolution 0 means the family's training size (hand-checked against the model cards)."""

import pytest

from dreammix_core.families import native_side


@pytest.mark.parametrize(
    ("family", "latent_format", "v_prediction", "side"),
    [
        ("SD1.5, SD1.5-inpainting, instruct-pix2pix", "SD15", False, 512),
        ("SD2-base, SD2-inpainting (epsilon)", "SD15", False, 512),
        ("SD2.1-768 (v-prediction)", "SD15", True, 768),
        ("SDXL, SDXL-inpainting, Segmind-Vega", "SDXL", False, 1024),
        ("SD3", "SD3", False, 1024),
        ("FLUX.1 dev / Fill", "Flux", False, 1024),
        ("FLUX.2 Klein", "Flux2", False, 1024),
        ("Z-Image (Turbo, Base)", "Flux", False, 1024),
        ("Qwen-Image, Qwen-Image-Edit (buckets up to 1328²)", "Wan21", False, 1024),
    ],
)
def test_native_side_per_family(family: str, latent_format: str, v_prediction: bool, side: int) -> None:
    assert native_side(latent_format, v_prediction) == side, family
