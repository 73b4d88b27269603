"""feature-extraction: sentence embeddings as sentence-transformers computes them, or token
embeddings exactly like ``transformers.pipeline("feature-extraction")`` when the model has
no sentence-transformers pooling config."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from serving.pooling import pool, sentence_transformers_pooling
from serving.tasks.base import Task, TaskParameters


class FeatureExtractionParameters(TaskParameters):
    normalize: bool | None = Field(
        None, description="L2-normalize sentence embeddings (default: the model's config)."
    )


class FeatureExtraction(Task):
    name: ClassVar[str] = "feature-extraction"
    parameters = FeatureExtractionParameters

    def __init__(self, pooling: tuple[str, ...] | None, normalize: bool) -> None:
        self.pooling = pooling  # None: token embeddings, like transformers.pipeline
        self.normalize = normalize

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None,
        pooling: str = "auto", normalize: bool | None = None, **_: Any,
    ) -> FeatureExtraction:
        prescribed = sentence_transformers_pooling(source, revision)
        st_modes, st_normalize = prescribed or (None, False)
        if pooling == "auto":
            modes = st_modes
        else:
            modes = None if pooling == "none" else (pooling,)
        return cls(modes, st_normalize if normalize is None else normalize)

    def forward(self, model: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling is None:
            lengths = mask.sum(dim=1).tolist()
            tokens = hidden.float().cpu().numpy()
            return [tokens[i, :n] for i, n in enumerate(lengths)]
        return list(pool(hidden, mask, self.pooling).float().cpu().numpy())

    def postprocess(self, output: np.ndarray, params: FeatureExtractionParameters) -> Any:
        if self.pooling is None:
            return [output.tolist()]  # pipeline shape: [1, tokens, dim] per input
        normalize = self.normalize if params.normalize is None else params.normalize
        if normalize:
            output = output / max(float(np.linalg.norm(output)), 1e-12)
        return output.tolist()
