"""Names typed in widgets stay inside the folder they are meant for."""

import os

import pytest

from dreammix_core.errors import DreamMixInputError
from dreammix_core.paths import confined_path


def test_relative_names_and_subfolders_resolve_inside(tmp_path) -> None:
    root = str(tmp_path)
    assert confined_path(root, "dreammix_regular", "folder") == os.path.join(os.path.realpath(root), "dreammix_regular")
    assert confined_path(root, " a/b/../c ", "folder") == os.path.join(os.path.realpath(root), "a", "c")
    inside = os.path.join(root, "x", "y")  # an absolute path inside the root, as Regular Data outputs it
    assert confined_path(root, inside, "folder") == os.path.join(os.path.realpath(root), "x", "y")


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


def test_a_link_pointing_out_is_refused(tmp_path) -> None:
    (tmp_path / "output").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "output" / "link")
    with pytest.raises(DreamMixInputError, match="is outside"):
        confined_path(str(tmp_path / "output"), "link/data", "dataset_folder")
