"""The one exception type the pack raises for bad input.

Nodes let it propagate unchanged: ComfyUI shows its message in the UI, so every message says
what is wrong and what to do, in the user's terms (image, mask, steps), never a tensor shape
from deep inside torch.
"""


class DreamMixInputError(ValueError):
    """Input the method cannot work with; the message tells the user how to fix it."""
