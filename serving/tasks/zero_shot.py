"""zero-shot-classification: the answers of ``transformers.pipeline("zero-shot-classification")``.

Each input text becomes one NLI premise/hypothesis pair per candidate label; the model's
entailment logits rank the labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import AliasChoices, Field, field_validator

from serving.errors import InvalidInputError
from serving.tasks.base import RowTokens, Task, TaskInputs, TaskParameters

MAX_LABELS = 64
LAYOUT = "zero-shot"
# huggingface_hub's InferenceClient reads zero-shot answers as a list of {label, score}
# from this version on (before, as the pipeline's {sequence, labels, scores}).
HF_HUB_LABEL_LIST_SINCE = (1, 2, 0)
_HF_HUB_VERSION = re.compile(r"(?:^|[;\s])hf_hub/(\d+)\.(\d+)(?:\.(\d+))?")


def wants_label_list(user_agent: str | None) -> bool:
    """Whether a request's ``User-Agent`` is an InferenceClient that reads zero-shot answers
    as ``[{label, score}]`` (the Inference API's current shape)."""
    match = _HF_HUB_VERSION.search(user_agent or "")
    if match is None:
        return False
    version = tuple(int(part or 0) for part in match.groups())
    return version >= HF_HUB_LABEL_LIST_SINCE


def as_label_list(answer: Any) -> Any:
    """``{sequence, labels, scores}`` (or a list of them) as ``[{label, score}]`` lists."""
    if isinstance(answer, list):
        return [as_label_list(item) for item in answer]
    return [{"label": label, "score": score}
            for label, score in zip(answer["labels"], answer["scores"], strict=True)]


class CandidateLabelParameters(TaskParameters):
    """The labels of a zero-shot request and how each becomes a hypothesis."""

    candidate_labels: list[str] = Field(
        ..., min_length=1, max_length=MAX_LABELS,
        description="Labels to rank: a list, or one comma-separated string.",
    )
    hypothesis_template: str = Field(
        "This example is {}.", description="Hypothesis per label; '{}' marks the label."
    )
    multi_label: bool = Field(
        False, description="Score each label independently instead of across labels."
    )

    @field_validator("candidate_labels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # As the pipeline does: "a, b,,c" → ["a", "b", "c"].
        if isinstance(value, str):
            return [label.strip() for label in value.split(",") if label.strip()]
        return value

    @field_validator("candidate_labels")
    @classmethod
    def _non_blank(cls, labels: list[str]) -> list[str]:
        for i, label in enumerate(labels):
            if not label.strip():
                raise ValueError(f"candidate_labels[{i}] is blank")
        return labels

    @field_validator("hypothesis_template")
    @classmethod
    def _has_slot(cls, template: str) -> str:
        if "{}" not in template:
            raise ValueError("must contain '{}' where the label goes")
        try:
            template.format("label")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"cannot be formatted with a label ({exc})") from None
        return template


class ZeroShotClassificationParameters(CandidateLabelParameters):
    # The pipeline truncates only the premise ("only_first") so the hypothesis stays whole;
    # true becomes that strategy, which the tokenizer receives as is. Wider than the base's
    # bool on purpose: the tokenizer takes either, and other readers only test its truth.
    truncation: bool | Literal["only_first"] = Field(  # type: ignore[assignment]
        True,
        validation_alias=AliasChoices("truncation", "truncate"),
        validate_default=True,
        description="Cut premises longer than the model window; false rejects them with 422.",
    )

    @field_validator("truncation")
    @classmethod
    def _strategy(cls, value: bool | str) -> str | bool:
        return "only_first" if value else False


def _softmax(logits: np.ndarray) -> np.ndarray:
    # The pipeline's exact formula (no max shift), so scores agree to the last bit.
    exp = np.exp(logits)
    return exp / exp.sum(-1, keepdims=True)


class ZeroShotClassification(Task):
    name: ClassVar[str] = "zero-shot-classification"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"tokenize"})
    parameters = ZeroShotClassificationParameters
    model_class = "AutoModelForSequenceClassification"
    # What a health probe must send: a request without candidate_labels is invalid.
    probe_parameters: ClassVar[dict[str, Any]] = {"candidate_labels": ["health"]}

    def __init__(self, entailment_id: int) -> None:
        self.entailment_id = entailment_id
        self.contradiction_id = -1 if entailment_id == 0 else 0

    @classmethod
    def from_model(
        cls, model: Any, source: str | None = None, revision: str | None = None,
        pooling: str = "auto", normalize: bool | None = None,
    ) -> ZeroShotClassification:
        """The task of a loaded NLI ``model`` (only its config is read: ``source`` may be
        left out)."""
        for label, index in model.config.label2id.items():
            if label.lower().startswith("entail"):
                return cls(int(index))
        return cls(-1)  # as the pipeline: the last logit stands for entailment

    @classmethod
    def parse_inputs(
        cls, inputs: Any, max_inputs: int, params: TaskParameters | None = None
    ) -> TaskInputs:
        """One (premise, hypothesis) pair per input text and candidate label.

        Without ``params`` the texts are only validated (no labels to expand them with).
        ``max_inputs`` limits the number of pairs.
        """
        parsed = super().parse_inputs(inputs, max_inputs, params)
        if params is None:
            return parsed
        if not isinstance(params, ZeroShotClassificationParameters):
            raise InvalidInputError("parameters.candidate_labels is required")
        labels = params.candidate_labels
        pairs = len(parsed.texts) * len(labels)
        if pairs > max_inputs:
            raise InvalidInputError(
                f"inputs × candidate_labels makes {pairs} premise/hypothesis pairs "
                f"({len(parsed.texts)} × {len(labels)}), more than the limit of "
                f"{max_inputs} per request"
            )
        hypotheses = [params.hypothesis_template.format(label) for label in labels]
        texts = [text for text in parsed.texts for _ in labels]
        text_pairs = hypotheses * len(parsed.texts)
        return TaskInputs(texts, text_pairs, parsed.single, layout=LAYOUT)

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        if inputs.layout == LAYOUT and results:
            per_input = len(inputs.texts) // len(results)
            results = [
                {"sequence": inputs.texts[i * per_input], **result}
                for i, result in enumerate(results)
            ]
        return results[0] if inputs.single else results

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        logits = engine.forward(batch).logits
        return list(logits.float().cpu().numpy())

    def postprocess_request(
        self,
        outputs: list[np.ndarray],
        params: TaskParameters,
        layout: str,
        tokens: RowTokens | None = None,
        texts: Sequence[str] | None = None,
        text_pairs: Sequence[str] | None = None,
    ) -> list[Any]:
        if layout != LAYOUT or not isinstance(params, ZeroShotClassificationParameters):
            raise InvalidInputError("parameters.candidate_labels is required")
        labels = params.candidate_labels
        logits = np.stack(outputs).astype(np.float32).reshape(-1, len(labels), outputs[0].shape[-1])
        if params.multi_label or len(labels) == 1:
            # Entailment against contradiction, for each label on its own.
            pairs = logits[..., [self.contradiction_id, self.entailment_id]]
            scores = _softmax(pairs)[..., 1]
        else:
            scores = _softmax(logits[..., self.entailment_id])  # across the labels
        answers = []
        for row in scores:
            order = list(reversed(row.argsort()))
            answers.append(
                {"labels": [labels[i] for i in order], "scores": row[order].tolist()}
            )
        return answers
