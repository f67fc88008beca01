"""Where LCG hands over to GCH.

The paper's λ is the share of the denoising trajectory given to global harmonisation:
λ = 0 is local generation only, λ = 1 is a plain full-image inpaint. The paper reports λ = 0.7;
the released code switches at step 20 of 30, i.e. λ = 1/3, and that is the default here.
"""

from .errors import DreamMixInputError

RELEASED_CODE_LAMBDA = 1.0 / 3.0
PAPER_LAMBDA = 0.7


def switch_step(steps: int, lam: float) -> int:
    """Index of the first GCH step: LCG runs steps [0, k), GCH runs [k, steps)."""
    if steps < 1:
        raise DreamMixInputError(f"steps must be at least 1, got {steps}.")
    if not 0.0 <= lam <= 1.0:
        raise DreamMixInputError(f"switch λ must be between 0 (LCG only) and 1 (GCH only), got {lam}.")
    return steps - round(lam * steps)
