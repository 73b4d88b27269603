"""Request and response bodies shared by the HTTP routes, the handle API and the tests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator


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

    def raw_inputs(self) -> Any:
        """Inputs as plain JSON values (pairs as dicts)."""
        if isinstance(self.inputs, list):
            return [i.model_dump() if isinstance(i, TextPair | QuestionAnsweringInputs) else i
                    for i in self.inputs]
        if isinstance(self.inputs, TextPair | SimilarityInputs | RankingInputs
                      | QuestionAnsweringInputs):
            return self.inputs.model_dump()
        return self.inputs


class ModelCard(BaseModel):
    """An entry of GET /v1/models (OpenAI list format plus the task)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "transformers-serve"
    task: str
    model: str
    pipeline: str = Field(description="The model deployments answering (differs for views).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    error: str
    error_type: str


class HealthReport(BaseModel):
    status: Literal["ok", "unhealthy"]
    models: dict[str, str] = Field(description="'ok' or the reason a model is unhealthy.")


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
