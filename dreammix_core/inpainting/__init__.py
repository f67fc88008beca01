"""Inpainting (paper §3.3): local content generation on the crop, then global context harmonization.

`pipeline` runs the two stages; `region` is the crop geometry, `fill` the masked-area fill,
`blend` the known-region blending and the final composite, `schedule` the switch step,
`window` GCH's part of the scene; `diffusers_backend` runs the stages on a diffusers
UNet, `diffusers_flux_backend` on a diffusers FLUX transformer (flow matching).
"""
