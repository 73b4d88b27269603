"""Request and response bodies shared by the HTTP routes, the handle API and the tests."""

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
from pydantic_core import PydanticCustomError

from serving.errors import InvalidInputError


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be served, or None when it can.

    A lone surrogate (JSON's ``"\\ud800"``) is not Unicode: tokenizers and JSON encoders
    cannot encode it. A NUL character is never text, and truncates strings in C libraries.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"contains a lone surrogate (U+{ord(text[exc.start]):04X}) at index "
                    f"{exc.start}, which is not valid Unicode")
    index = text.find("\x00")
    if index >= 0:
        return f"contains a NUL character (U+0000) at index {index}"
    return None


def find_unreadable_text(value: Any, root: str = "") -> str | None:
    """``"<where>: <why>"`` for the first string of a JSON value (object keys included)
    that :func:`text_problem` refuses; None when there is none."""
    if not _has_unreadable_text(value):  # the common case, without building locations
        return None
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:  # depth-first in document order, without recursion (JSON may nest deeply)
        item, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{where or 'request body'}: {problem}"
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    return f"{where or 'request body'}: a key {problem}"
                children.append((child, f"{where}.{key}" if where else str(key)))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(child, f"{where}[{i}]") for i, child in enumerate(item)]))
    return None


def _has_unreadable_text(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if text_problem(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _refuse_unreadable_text(data: Any, root: str = "") -> Any:
    problem = find_unreadable_text(data, root)
    if problem is not None:
        # The message goes in the context: a template would read braces in it as fields.
        raise PydanticCustomError("unreadable_text", "{problem}", {"problem": problem})
    return data


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
    truncation_direction: Literal["right", "left"] | None = Field(
        None, description="Only 'right' (the end of long inputs is cut); 'left' is refused."
    )
    dimensions: int | None = Field(
        None, ge=1, description="feature-extraction: same as parameters.dimensions (keep the "
        "first n dimensions, re-normalised when the embeddings are normalized).",
    )
    prompt_name: str | None = Field(
        None, description="Not supported: a request naming a prompt is refused with 422."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="Only 'float' (JSON numbers); 'base64' is for /v1/embeddings."
    )

    @model_validator(mode="before")
    @classmethod
    def _readable_text(cls, data: Any) -> Any:
        return _refuse_unreadable_text(data)

    @field_validator("truncation_direction")
    @classmethod
    def _right_only(cls, value: str | None) -> str | None:
        if value == "left":
            raise ValueError("only 'right' is supported (long inputs lose their end); "
                             "'left' truncation is not implemented")
        return value

    @field_validator("prompt_name")
    @classmethod
    def _no_prompts(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("sentence-transformers prompts are not supported; prepend the "
                             "prompt to the text yourself")
        return value

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
        ``dimensions``) moved in; ``accepted`` names the task's parameters.

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
)


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


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``, as OpenAI's embeddings API takes it."""

    model: str = Field(description="A served feature-extraction model with sentence pooling.")
    input: StrictStr | list[StrictStr] | list[int] | list[list[int]] = Field(
        description="One text or a list of texts (token-id inputs are refused with 422)."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64': each vector as little-endian float32 bytes, base64."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first n dimensions (re-normalised)."
    )
    user: str | None = Field(None, description="Accepted and ignored.")

    @model_validator(mode="before")
    @classmethod
    def _readable_text(cls, data: Any) -> Any:
        return _refuse_unreadable_text(data)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read (after truncation).")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


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


# --- Text Embeddings Inference (TEI) routes: its request bodies and field names -----------

class _TeiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    truncate: bool | None = Field(
        None, description="Cut inputs longer than the model window (default: true here); "
        "false rejects them with 422.",
    )
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        "right", description="Only 'right' (the end of long inputs is cut)."
    )

    @field_validator("truncation_direction")
    @classmethod
    def _right_only(cls, value: str) -> str:
        if value.lower() == "left":
            raise ValueError("only 'right' is supported (long inputs lose their end)")
        return value.lower()


class TeiEmbedRequest(_TeiRequest):
    """``POST /embed``."""

    inputs: StrictStr | list[StrictStr] = Field(description="One text or a list of texts.")
    normalize: bool = Field(True, description="Unit-length vectors (TEI's default).")
    dimensions: int | None = Field(None, ge=1, description="Keep the first n dimensions.")
    prompt_name: None = Field(None, description="Not supported: prepend the prompt yourself.")


class TeiPredictRequest(_TeiRequest):
    """``POST /predict``: a text, a pair ``[a, b]``, or a batch ``[[a], [a, b], ...]``."""

    inputs: StrictStr | list[StrictStr] | list[list[StrictStr]]
    raw_scores: bool = Field(False, description="Logits instead of probabilities.")


class TeiRerankRequest(_TeiRequest):
    """``POST /rerank``."""

    query: StrictStr
    texts: list[StrictStr] = Field(min_length=1)
    raw_scores: bool = Field(False, description="Logits instead of probabilities.")
    return_text: bool = Field(False, description="Include each text in its entry.")


class TeiSimilarityParameters(_TeiRequest):
    prompt_name: None = Field(None, description="Not supported: prepend the prompt yourself.")


class TeiSimilarityRequest(BaseModel):
    """``POST /similarity``: cosine similarity of each sentence to the source sentence."""

    model_config = ConfigDict(extra="forbid")
    inputs: SimilarityInputs
    parameters: TeiSimilarityParameters | None = None


class TeiTokenizeRequest(BaseModel):
    """``POST /tokenize``."""

    model_config = ConfigDict(extra="forbid")
    inputs: StrictStr | list[StrictStr]
    add_special_tokens: bool = True
    prompt_name: None = Field(None, description="Not supported: prepend the prompt yourself.")


class TeiToken(BaseModel):
    id: int
    text: str = Field(description="The token's span of the input (special tokens: the token).")
    special: bool
    start: int | None = Field(description="Character offsets in the input; null if special.")
    stop: int | None


class TeiInfo(BaseModel):
    """``GET /info`` (TEI's fields) for one served model."""

    model_id: str
    model_sha: str | None
    model_dtype: str
    model_type: dict[str, Any] = Field(
        description='{"embedding": {"pooling"}}, {"classifier": {"id2label", "label2id"}} or '
        '{"reranker": ...} as TEI reports it; other tasks: {"<task>": {}}.'
    )
    max_concurrent_requests: int
    max_input_length: int = Field(description="Tokens per input (the model window).")
    max_batch_tokens: int = Field(description="Tokens of one model batch (texts × window).")
    max_batch_requests: int = Field(description="Texts of one model batch.")
    max_client_batch_size: int = Field(description="Inputs one request may send.")
    auto_truncate: bool = True
    tokenization_workers: int
    version: str
    name: str = Field(description="The served name (this project serves several models).")
    task: str


class TeiInfoList(TeiInfo):
    """``GET /info``: the default model's info, and every model's under ``models``."""

    models: dict[str, TeiInfo]
