"""Where LCG hands over to GCH, and which stages run.

The paper's λ (`lam` in the core, the `switch` input on the nodes) is the share of the denoising
trajectory given to global harmonisation: λ = 0 is local generation only, λ = 1 is a plain
full-image inpaint. The paper reports λ = 0.7; the released code switches at step 20 of 30,
i.e. λ = 1/3, and that is the default here. The switch step (`switch_at`) is the index of the
first GCH step.
"""

from dataclasses import dataclass

from ..errors import DreamMixInputError

RELEASED_CODE_LAMBDA = 1.0 / 3.0


def switch_step(steps: int, lam: float) -> int:
    """Index of the first GCH step: LCG runs steps [0, k), GCH runs [k, steps)."""
    if steps < 1:
        raise DreamMixInputError(f"steps must be at least 1, got {steps}.")
    if not 0.0 <= lam <= 1.0:
        raise DreamMixInputError(f"switch λ must be between 0 (LCG only) and 1 (GCH only), got {lam}.")
    return steps - round(lam * steps)


@dataclass(frozen=True)
class StageSplit:
    """One `steps`-step schedule split at `switch_at`: the one rule for which stage runs.

    The one-shot pipeline and the granular nodes both ask it, so they skip the same stages.
    """

    steps: int
    switch_at: int

    @classmethod
    def of(cls, steps: int, lam: float) -> "StageSplit":
        return cls(steps, switch_step(steps, lam))

    @property
    def runs_local(self) -> bool:
        """LCG runs unless λ = 1 leaves it no step (then the scene goes to GCH unchanged)."""
        return self.switch_at > 0

    @property
    def runs_global(self) -> bool:
        """GCH runs unless λ = 0 leaves it no step (then the LCG paste is the result)."""
        return self.switch_at < self.steps
