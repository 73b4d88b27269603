"""The sentiment benchmark's model: a DistilBERT classifier the size of
distilbert-base-uncased-finetuned-sst-2-english (the project's original task), with seeded
random weights, so a forward pass costs what the real one does and nothing is downloaded.

Its tokenizer is the bert-base-uncased vocabulary, which the embedded all-MiniLM-L6-v2
ships (DistilBERT's is the same file). Random weights give low-margin scores (0.50-0.55) and
the labels mean nothing: the compute is the point. The head's bias is centred on a few
calibration texts so both labels occur (uncentred, every bench text came out NEGATIVE,
which would hide a swapped or constant label in a parity check).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.project import ROOT

MODEL_DIR = ROOT / "bench" / ".sentiment-model"
NAME = "sentiment"  # the model's name in the project's app: POST /models/sentiment
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}  # SST-2's
SEED = 0
MAX_LENGTH = 512  # the checkpoint's window (max_position_embeddings, model_max_length)
# A models: entry's identity and its embedding-only parts; every other setting (engine,
# batching, replicas, CPUs) is copied from the base config's first model.
_NOT_COPIED = frozenset({"name", "task", "model", "revision", "views", "pool", "members",
                         "preload", "max_models_per_replica", "pooling", "normalize"})
_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def ensure_model(path: Path = MODEL_DIR, *, dim: int = 768, n_layers: int = 6,
                 n_heads: int = 12, hidden_dim: int = 3072) -> str:
    """The directory of the sentiment classifier, built there unless already complete.

    Args:
        path: where the model lives (default ``bench/.sentiment-model``, git-ignored).
        dim, n_layers, n_heads, hidden_dim: DistilBERT's sizes; the defaults are the SST-2
            checkpoint's (66M parameters, ~255 MB), smaller ones make a tiny model for tests.

    Returns:
        ``path`` as a string, holding config.json, model.safetensors and a fast tokenizer.
    """
    sizes = {"dim": dim, "n_layers": n_layers, "n_heads": n_heads, "hidden_dim": hidden_dim}
    if _complete(path, sizes):
        return str(path)
    # Built beside the target and moved in, so a server never sees half a model.
    staging = path.with_name(f"{path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    _build(staging, sizes)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return str(path)


def app_args(model_dir: str, base: dict) -> dict:
    """The project's app ``args`` serving ``model_dir`` alone, as text-classification model
    ``sentiment``, with the serving settings of ``base``'s first model.

    Args:
        model_dir: the classifier (see :func:`ensure_model`).
        base: app args such as ``bench.project.default_args()``; its other top-level
            settings (ingress...) are kept.
    """
    settings = {k: v for k, v in base["models"][0].items() if k not in _NOT_COPIED}
    model = {"name": NAME, "task": "text-classification", "model": model_dir, **settings}
    return {**base, "models": [model]}


def _complete(path: Path, sizes: dict[str, int]) -> bool:
    if not all((path / name).is_file() for name in _FILES):
        return False
    config = json.loads((path / "config.json").read_text())
    return all(config.get(key) == value for key, value in sizes.items())


def _build(directory: Path, sizes: dict[str, int]) -> None:
    import torch
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
    )

    from serving.models import resolve_model_source

    minilm = Path(resolve_model_source("sentence-transformers/all-MiniLM-L6-v2"))
    tokenizer = DistilBertTokenizerFast(vocab=str(minilm / "vocab.txt"), do_lower_case=True,
                                        model_max_length=MAX_LENGTH)
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size, max_position_embeddings=MAX_LENGTH, **sizes,
        id2label=LABELS, label2id={label: i for i, label in LABELS.items()},
        pad_token_id=tokenizer.pad_token_id, architectures=["DistilBertForSequenceClassification"],
    )
    torch.manual_seed(SEED)  # the same weights on every build
    model = DistilBertForSequenceClassification(config).eval()
    _balance(model, tokenizer)
    directory.mkdir(parents=True)
    model.save_pretrained(directory)  # safetensors
    tokenizer.save_pretrained(directory)


def _balance(model, tokenizer) -> None:
    """Shift the head's bias so the median logit margin over calibration texts is zero."""
    import torch

    from bench.workloads import texts

    # Not the bench's own texts (seed 0): centred on others, the bench's split ~50/50 too.
    batch = tokenizer(texts("mixed", 64, seed=1), padding=True, truncation=True,
                      return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        margin = (logits[:, 1] - logits[:, 0]).median()
        model.classifier.bias += torch.stack([margin / 2, -margin / 2])
