"""Where a model comes from: a folder, or a Hub id looked up in the local Hugging Face cache (never the network
unless asked)."""

import huggingface_hub
import pytest

from dreammix_core.model_source import local_model_folder, looks_like_path


@pytest.mark.parametrize(
    ("source", "is_path"),
    [
        ("openai/clip-vit-large-patch14", False),  # owner/name: a Hub id
        ("gpt2", False),  # a bare name: a Hub id
        ("models/vlm/llava", True),  # two separators: a relative folder
        ("/models/clip", True),
        ("./clip", True),
        ("~/clip", True),
        ("..", True),
        ("C:\\models\\clip", True),
    ],
)
def test_which_sources_are_folders(source: str, is_path: bool) -> None:
    assert looks_like_path(source) is is_path


def test_a_cached_hub_id_resolves_to_its_snapshot_without_the_network(tmp_path, monkeypatch) -> None:
    """A cache laid out as huggingface_hub lays it out: refs/main names the snapshot folder."""
    repo = tmp_path / "models--owner--tiny"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    calls = []
    original = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):  # records what is asked; always answers from the cache in tmp_path, offline
        calls.append((args, kwargs))
        return original(*args, cache_dir=str(tmp_path), local_files_only=True)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    assert local_model_folder("owner/tiny", "CLIP model", "owner/example") == snapshot
    assert calls == [(("owner/tiny",), {"local_files_only": True})]
    local_model_folder("owner/tiny", "CLIP model", "owner/example", allow_download=True)
    assert calls[-1] == (("owner/tiny",), {"local_files_only": False})
