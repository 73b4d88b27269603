"""Sentence-transformers pooling, reproduced for right-padded batches (torch, no Ray).

Modes and their order follow ``sentence_transformers.models.Pooling``; several modes are
concatenated in the order the config lists them.
"""

from __future__ import annotations

from typing import Any

from serving.models import read_json

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# Old-style boolean keys of 1_Pooling/config.json, in sentence-transformers' order.
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def parse_pooling_config(config: dict) -> tuple[str, ...]:
    """The pooling modes of a ``1_Pooling/config.json`` (old or new format).

    Raises:
        ValueError: for a mode sentence-transformers does not define, or none at all.
    """
    mode = config.get("pooling_mode")
    if mode is None:
        # No mode at all means sentence-transformers' default, mean pooling.
        modes = tuple(name for key, name in _LEGACY_KEYS.items() if config.get(key)) or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown or not modes:
        raise ValueError(f"unsupported pooling mode(s) {unknown or modes}; known: {POOLING_MODES}")
    return modes


def _modules_and_pooling(source: str, revision: str | None) -> tuple[list, dict | None]:
    """A sentence-transformers model's modules and its pooling config (None: none)."""
    modules = read_json(source, "modules.json", revision) or []
    if not isinstance(modules, list):
        raise ValueError(f"{source}: modules.json is not a list of modules")
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith(".Pooling")), "1_Pooling")
    config = read_json(source, f"{pooling_dir}/config.json", revision)
    if not config:
        return modules, None
    if not isinstance(config, dict):
        raise ValueError(f"{source}: {pooling_dir}/config.json is not a JSON object")
    return modules, config


def sentence_transformers_pooling(
    source: str, revision: str | None = None
) -> tuple[tuple[str, ...], bool] | None:
    """``(modes, normalize)`` prescribed by a sentence-transformers model, or None if the
    model has no pooling config."""
    modules, config = _modules_and_pooling(source, revision)
    if config is None:
        return None
    normalize = any(m["type"].endswith(".Normalize") for m in modules)
    return parse_pooling_config(config), normalize


def pools_prompt(source: str, revision: str | None = None) -> bool:
    """Whether the model's pooling reads a prompt's tokens with the text's (``false`` for
    ``include_prompt: false``, INSTRUCTOR-style models)."""
    _, config = _modules_and_pooling(source, revision)
    return config is None or config.get("include_prompt", True) is not False


def pool(hidden: Any, mask: Any, modes: tuple[str, ...]) -> Any:
    """Pool right-padded token embeddings ``[batch, seq, dim]`` into sentence embeddings."""
    import torch

    accumulate = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    expanded = mask.unsqueeze(-1).to(hidden.dtype)
    vectors = []
    for mode in modes:
        if mode == "cls":
            vectors.append(hidden[:, 0])
        elif mode == "max":
            vectors.append(hidden.masked_fill(expanded == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            summed = (hidden * expanded).sum(dim=1, dtype=accumulate)
            counts = expanded.sum(dim=1, dtype=accumulate).clamp(min=1e-9)
            divisor = counts if mode == "mean" else torch.sqrt(counts)
            vectors.append((summed / divisor).to(hidden.dtype))
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device,
                                     dtype=accumulate).view(1, -1, 1)
            weights = expanded.to(accumulate) * positions
            summed = (hidden * weights).sum(dim=1)
            vectors.append((summed / weights.sum(dim=1).clamp(min=1e-9)).to(hidden.dtype))
        elif mode == "lasttoken":
            last = mask.sum(dim=1) - 1
            vectors.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return torch.cat(vectors, dim=-1)
