"""text-classification: the answers of ``transformers.pipeline("text-classification")``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from serving.tasks.base import (
    Task,
    TaskInputs,
    TaskParameters,
    TruncatedEitherSide,
    own_parameters,
)


class TextClassificationParameters(TruncatedEitherSide):
    top_k: int | None = Field(
        None, ge=1, le=100_000, description="Return the k most likely labels (default: all)."
    )
    function_to_apply: Literal["sigmoid", "softmax", "none"] | None = Field(
        None, description="Score function; default follows the model's problem type."
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


_FUNCTIONS = {"softmax": _softmax, "sigmoid": _sigmoid, "none": lambda logits: logits}


def default_function(problem_type: str | None, num_labels: int) -> str:
    """The score function ``transformers.pipeline`` applies when none is asked for."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


class TextClassification(Task):
    name: ClassVar[str] = "text-classification"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"predict", "rerank", "tokenize"})
    parameters = TextClassificationParameters
    model_class = "AutoModelForSequenceClassification"
    accepts_pairs = True

    def __init__(self, id2label: dict[int, str], problem_type: str | None, num_labels: int) -> None:
        self.id2label = id2label
        self.default_function = default_function(problem_type, num_labels)

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None, pooling: str = "auto",
        normalize: bool | None = None,
    ) -> TextClassification:
        config = model.config
        return cls(config.id2label, config.problem_type, config.num_labels)

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        # The Inference API answers a list of {label, score} lists, one per input,
        # even for a single string.
        return results

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        logits = engine.forward(batch).logits
        return list(logits.float().cpu().numpy())

    def postprocess(self, output: np.ndarray, params: TaskParameters) -> Any:
        params = own_parameters(params, TextClassificationParameters)
        scores = _FUNCTIONS[params.function_to_apply or self.default_function](output)
        ranked = [
            {"label": self.id2label[i], "score": score.item()} for i, score in enumerate(scores)
        ]
        ranked.sort(key=lambda entry: entry["score"], reverse=True)
        return ranked[: params.top_k] if params.top_k is not None else ranked
