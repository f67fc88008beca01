"""Names typed in widgets stay inside the folder they are meant for."""

import os

import pytest

from dreammix_core.errors import DreamMixInputError
from dreammix_core.paths import confined_path


def test_relative_names_and_subfolders_resolve_inside(tmp_path) -> None:
    root = str(tmp_path)
    assert confined_path(root, "dreammix_regular", "folder") == os.path.join(root, "dreammix_regular")
    assert confined_path(root, " a/b/../c ", "folder") == os.path.join(root, "a", "c")
    inside = os.path.join(root, "x", "y")  # an absolute path inside the root, as Regular Data outputs it
    assert confined_path(root, inside, "folder") == os.path.join(root, "x", "y")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc", "is outside"),
        ("../outside", "is outside"),
        ("a/../../outside", "is outside"),
        ("bad\0name", "NUL character"),
        ("   ", "is empty"),
    ],
)
def test_names_that_leave_the_root_are_refused(tmp_path, name: str, message: str) -> None:
    with pytest.raises(DreamMixInputError, match=message):
        confined_path(str(tmp_path / "output"), name, "dataset_folder")


def test_a_linked_sub_folder_stays_usable(tmp_path) -> None:
    """As in ComfyUI's SaveImage rule, names are checked as typed: a folder the user linked elsewhere works."""
    (tmp_path / "output").mkdir()
    (tmp_path / "other_disk").mkdir()
    os.symlink(tmp_path / "other_disk", tmp_path / "output" / "linked")
    path = confined_path(str(tmp_path / "output"), "linked/data", "dataset_folder")
    assert path == os.path.join(str(tmp_path / "output"), "linked", "data")
