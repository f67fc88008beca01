"""Where a transformers model comes from: a local folder, or a Hub id already in the local cache.

ComfyUI often runs offline, and transformers would retry the network for minutes on an id it does
not have; so a Hub id is looked up in the local Hugging Face cache only, unless a download is asked.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DreamMixInputError


def looks_like_path(source: str) -> bool:
    """A Hub id is 'name' or 'owner/name'; anything else with a separator or a leading dot/tilde is a folder."""
    return Path(source).is_absolute() or source.startswith((".", "~")) or "\\" in source or source.count("/") > 1


def local_model_folder(source: str, name: str, example: str, allow_download: bool = False) -> Path:
    """The folder holding the model `source`, checked to contain a config.json.

    `name` ("VLM", "CLIP model") and `example` (a Hub id) make the error messages say what to give.
    """
    path = Path(source).expanduser()
    if path.exists() or looks_like_path(source):
        if not path.is_dir():
            raise DreamMixInputError(
                f"The {name} folder '{source}' does not exist. Give the folder that holds the model's config.json, "
                f"or a Hugging Face id such as '{example}'."
            )
    else:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(source, local_files_only=not allow_download))
        except Exception as error:  # not cached offline, no such repository, malformed id, no network
            how = "could not be downloaded" if allow_download else "is not in the local Hugging Face cache"
            raise DreamMixInputError(
                f"The {name} '{source}' {how}. Download it first (e.g. `hf download {source}`) "
                f"or give the local folder that holds its files. ({type(error).__name__}: {error})"
            ) from error
    if not (path / "config.json").is_file():
        raise DreamMixInputError(
            f"The {name} folder '{path}' has no model in it (no config.json). Put all files of the model there, "
            f"e.g. those of '{example}'."
        )
    return path
