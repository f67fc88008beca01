"""User-given folder and file names, confined to the folder they are meant for.

A node may write or read only inside ComfyUI's own folders (output, models); a name typed in a
widget must not reach elsewhere through an absolute path or `..`. The rule is ComfyUI's own
SaveImage rule: the normalised path's common path with the root is the root. Links are not
followed, as there: a sub-folder the user linked to another disk stays usable.
"""

from __future__ import annotations

import os

from .errors import DreamMixInputError


def confined_path(root: str, name: str, what: str) -> str:
    """`name` resolved inside `root`; DreamMixInputError if it leads anywhere else.

    A relative name (sub-folders allowed) is taken under `root`; an absolute one only when it lies
    inside `root`, as the path DreamMix Regular Data outputs for the trainer does.

    `what` names the input in the message, e.g. "dataset_folder".
    """
    name = name.strip()
    if "\0" in name:
        raise DreamMixInputError(f"{what} contains a NUL character: type a plain name.")
    if not name:
        raise DreamMixInputError(f"{what} is empty: type a name.")
    base = os.path.abspath(root)
    path = os.path.abspath(os.path.join(base, name))  # an absolute name replaces the base
    if os.path.commonpath([base, path]) != base:
        raise DreamMixInputError(
            f"{what} '{name}' is outside {root}: give a name relative to it (no '..', no other folder)."
        )
    return path
