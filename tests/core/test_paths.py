"""Names typed in widgets stay inside the folder they are meant for."""

import os
import re

import pytest

from dreammix_core.errors import DreamMixInputError
from dreammix_core.paths import confined_path


def test_relative_names_and_subfolders_resolve_inside(tmp_path) -> None:
    root = str(tmp_path)
    assert confined_path(root, "dreammix_regular", "folder") == os.path.join(root, "dreammix_regular")
    assert confined_path(root, " a/b/../c ", "folder") == os.path.join(root, "a", "c")
    inside = os.path.join(root, "x", "y")  # an absolute path inside the root, as Regular Data outputs it
    assert confined_path(root, inside, "folder") == os.path.join(root, "x", "y")


OUTSIDE = "dataset_folder '{name}' is outside {root}: give a name relative to it (no '..', no other folder)."


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc", OUTSIDE),
        ("../outside", OUTSIDE),
        ("a/../../outside", OUTSIDE),
        ("bad\0name", "dataset_folder contains a NUL character: type a plain name."),
        ("   ", "dataset_folder is empty: type a name."),
    ],
)
def test_names_that_leave_the_root_are_refused(tmp_path, name: str, message: str) -> None:
    root = str(tmp_path / "output")
    expected = message.format(name=name, root=root)  # the name as typed, the root as given
    with pytest.raises(DreamMixInputError, match="^" + re.escape(expected) + "$"):
        confined_path(root, name, "dataset_folder")


def test_a_linked_sub_folder_stays_usable(tmp_path) -> None:
    """As in ComfyUI's SaveImage rule, names are checked as typed: a folder the user linked elsewhere works."""
    (tmp_path / "output").mkdir()
    (tmp_path / "other_disk").mkdir()
    os.symlink(tmp_path / "other_disk", tmp_path / "output" / "linked")
    path = confined_path(str(tmp_path / "output"), "linked/data", "dataset_folder")
    assert path == os.path.join(str(tmp_path / "output"), "linked", "data")
