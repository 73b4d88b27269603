"""feature-extraction: sentence embeddings as sentence-transformers computes them, or token
embeddings exactly like ``transformers.pipeline("feature-extraction")`` when the model has
no sentence-transformers pooling config."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from serving.models import read_json
from serving.tasks.base import Task, TaskParameters

_ST_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
}


class FeatureExtractionParameters(TaskParameters):
    normalize: bool | None = Field(
        None, description="L2-normalize sentence embeddings (default: the model's config)."
    )


def sentence_transformers_pooling(source: str, revision: str | None) -> tuple[str, bool]:
    """Pooling mode and normalization prescribed by a sentence-transformers model dir.

    Returns ``("none", False)`` when the model has no sentence-transformers config.
    """
    modules = read_json(source, "modules.json", revision) or []
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith(".Pooling")), None)
    normalize = any(m["type"].endswith(".Normalize") for m in modules)
    pooling = read_json(source, f"{pooling_dir or '1_Pooling'}/config.json", revision)
    if not pooling:
        return "none", False
    mode = pooling.get("pooling_mode")
    if mode is None:
        mode = next((name for key, name in _ST_MODES.items() if pooling.get(key)), "mean")
    return mode, normalize


def pool(hidden: Any, mask: Any, mode: str) -> Any:
    """Pool token embeddings ``[batch, seq, dim]`` into sentence embeddings (torch)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[range(hidden.shape[0]), last]
    expanded = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(expanded == 0, -1e9).max(dim=1).values
    summed = (hidden * expanded).sum(dim=1)
    return summed / expanded.sum(dim=1).clamp(min=1e-9)


class FeatureExtraction(Task):
    name: ClassVar[str] = "feature-extraction"
    parameters = FeatureExtractionParameters

    def __init__(self, pooling: str, normalize: bool) -> None:
        self.pooling = pooling
        self.normalize = normalize

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None,
        pooling: str = "auto", normalize: bool | None = None, **_: Any,
    ) -> FeatureExtraction:
        st_pooling, st_normalize = sentence_transformers_pooling(source, revision)
        mode = st_pooling if pooling == "auto" else pooling
        return cls(mode, st_normalize if normalize is None else normalize)

    def forward(self, model: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling == "none":
            lengths = mask.sum(dim=1).tolist()
            tokens = hidden.float().cpu().numpy()
            return [tokens[i, :n] for i, n in enumerate(lengths)]
        return list(pool(hidden, mask, self.pooling).float().cpu().numpy())

    def postprocess(self, output: np.ndarray, params: FeatureExtractionParameters) -> Any:
        if self.pooling == "none":
            return [output.tolist()]  # pipeline shape: [1, tokens, dim] per input
        normalize = self.normalize if params.normalize is None else params.normalize
        if normalize:
            output = output / max(float(np.linalg.norm(output)), 1e-12)
        return output.tolist()
