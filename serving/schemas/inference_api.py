"""The Hugging Face Inference API: ``POST /models/{name}`` request bodies, and the examples
the OpenAPI page offers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from serving.errors import InvalidInputError
from serving.schemas.text import TruncationDirection, refuse_unreadable_text


class TextPair(BaseModel):
    """A text-classification input made of two segments."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr
    text_pair: StrictStr


class SimilarityInputs(BaseModel):
    """sentence-similarity input: one source sentence compared with several others."""

    model_config = ConfigDict(extra="forbid")
    source_sentence: StrictStr
    sentences: list[StrictStr]


class RankingInputs(BaseModel):
    """text-ranking input: texts to sort by relevance to a query."""

    model_config = ConfigDict(extra="forbid")
    query: StrictStr
    texts: list[StrictStr]


class QuestionAnsweringInputs(BaseModel):
    """question-answering input: a question to answer from a context."""

    model_config = ConfigDict(extra="forbid")
    question: StrictStr
    context: StrictStr


Inputs = (
    StrictStr | TextPair | SimilarityInputs | RankingInputs | QuestionAnsweringInputs
    | list[StrictStr | TextPair | QuestionAnsweringInputs]
)


class InferenceRequest(BaseModel):
    """The Hugging Face Inference API payload."""

    model_config = ConfigDict(extra="forbid")

    inputs: Inputs = Field(description="One text, a list of texts, or text pairs.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Task parameters, e.g. {\"top_k\": 2}."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Inference API options (use_cache, wait_for_model); accepted and ignored.",
    )
    stream: bool = Field(
        False, description="text-generation over HTTP: answer Server-Sent Events per token "
        "(as TGI clients send it; parameters.stream works too).",
    )
    # feature-extraction options at the top level of the body, as TEI takes them and
    # huggingface_hub's InferenceClient.feature_extraction sends them.
    normalize: bool | None = Field(
        None, description="feature-extraction: same as parameters.normalize (TEI style)."
    )
    truncate: bool | None = Field(
        None, description="feature-extraction: same as parameters.truncation (TEI style)."
    )
    truncation_direction: TruncationDirection | None = Field(
        None, description="Same as parameters.truncation_direction (TEI style): which end of "
        "a long input is cut.",
    )
    dimensions: int | None = Field(
        None, ge=1, description="feature-extraction: same as parameters.dimensions (keep the "
        "first n dimensions, re-normalised when the embeddings are normalized).",
    )
    prompt_name: str | None = Field(
        None, description="feature-extraction: same as parameters.prompt_name (a prompt of "
        "the model's sentence-transformers config).",
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="Only 'float' (JSON numbers); 'base64' is for /v1/embeddings."
    )

    @model_validator(mode="before")
    @classmethod
    def _readable_text(cls, data: Any) -> Any:
        return refuse_unreadable_text(data)

    @field_validator("encoding_format")
    @classmethod
    def _float_only(cls, value: str | None) -> str | None:
        if value == "base64":
            raise ValueError("only 'float' is supported here; POST /v1/embeddings answers "
                             "base64")
        return value

    @field_validator("inputs", mode="wrap")
    @classmethod
    def _readable_inputs_error(cls, value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                "must be a string, a list of strings, {\"text\", \"text_pair\"} objects, "
                "{\"source_sentence\", \"sentences\"}, {\"query\", \"texts\"} or "
                "{\"question\", \"context\"} objects"
            ) from None

    def task_parameters(self, accepted: Collection[str]) -> dict[str, Any]:
        """``parameters`` with the top-level options (``normalize``, ``truncate``,
        ``dimensions``, ``truncation_direction``, ``prompt_name``) moved in; ``accepted``
        names the task's parameters.

        Raises:
            InvalidInputError: an option the task does not take, or one also given in
                ``parameters`` with another value, naming it.
        """
        merged = dict(self.parameters)
        for field, name, aliases in _TOP_LEVEL_PARAMETERS:
            value = getattr(self, field)
            if value is None:
                continue
            if name not in accepted:
                raise InvalidInputError(f"{field}: this model's task does not take it")
            for key in (name, *aliases):
                if key in merged and merged[key] != value:
                    raise InvalidInputError(
                        f"{field}: given at the top level and as parameters.{key} with "
                        "different values"
                    )
                merged.pop(key, None)
            merged[name] = value
        return merged

    def raw_inputs(self) -> Any:
        """Inputs as plain JSON values (pairs as dicts)."""
        if isinstance(self.inputs, list):
            return [i.model_dump() if isinstance(i, TextPair | QuestionAnsweringInputs) else i
                    for i in self.inputs]
        if isinstance(self.inputs, TextPair | SimilarityInputs | RankingInputs
                      | QuestionAnsweringInputs):
            return self.inputs.model_dump()
        return self.inputs


# Top-level request options → (the task parameter they set, its other names).
_TOP_LEVEL_PARAMETERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("normalize", "normalize", ()),
    ("truncate", "truncation", ("truncate",)),
    ("dimensions", "dimensions", ()),
    ("truncation_direction", "truncation_direction", ()),
    ("prompt_name", "prompt_name", ()),
)


EXAMPLES: dict[str, dict[str, Any]] = {
    "embedding": {
        "summary": "Sentence embedding (feature-extraction)",
        "value": {"inputs": "Ray Serve batches requests for me."},
    },
    "embeddings": {
        "summary": "Several embeddings, unnormalized",
        "value": {"inputs": ["first text", "second text"], "parameters": {"normalize": False}},
    },
    "classification": {
        "summary": "Text classification, two best labels",
        "value": {"inputs": "I love this movie!", "parameters": {"top_k": 2}},
    },
    "similarity": {
        "summary": "Sentence similarity (feature-extraction models with pooling)",
        "value": {"inputs": {"source_sentence": "A man is eating food.",
                             "sentences": ["A man eats.", "The sky is blue."]}},
    },
    "question-answering": {
        "summary": "Extractive question answering",
        "value": {"inputs": {"question": "Where do I live?",
                             "context": "My name is Wolfgang and I live in Berlin."}},
    },
    "pair": {
        "summary": "Text-pair classification",
        "value": {"inputs": {"text": "A man is eating.", "text_pair": "Someone eats."}},
    },
}
