"""Text Embeddings Inference (TEI): its request bodies and field names."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from serving.schemas.inference_api import SimilarityInputs
from serving.schemas.text import TruncationDirection


def _prompt_name() -> Any:
    return Field(None, description="A prompt of the model's sentence-transformers config "
                 "(e.g. 'query'), put before each text; default: the config's default "
                 "prompt, if any.")


def _readable(problem: str) -> WrapValidator:
    """A validator replacing pydantic's one error per union member with ``problem``."""
    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("tei_inputs", problem) from None
    return WrapValidator(check)


# TEI's ``Input``: one text, one input of token ids, or a batch of texts and token-id inputs.
TeiInputs = Annotated[
    StrictStr | list[StrictInt] | list[StrictStr | list[StrictInt]],
    _readable("must be a string, a list of token ids (integers), or a list of strings and "
              "lists of token ids"),
]
# TEI's ``InputIds``: one input of token ids, or a batch of them.
TeiInputIds = Annotated[
    list[StrictInt] | list[list[StrictInt]],
    _readable("must be a list of token ids (integers), or a list of such lists"),
]


class _TeiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    truncate: bool | None = Field(
        None, description="Cut inputs longer than the model window (default: true here); "
        "false rejects them with 422.",
    )
    truncation_direction: TruncationDirection = Field(
        "right", description="Which end of a long input is cut: 'right' keeps its start, "
        "'left' its end."
    )


class TeiEmbedRequest(_TeiRequest):
    """``POST /embed``."""

    inputs: TeiInputs = Field(
        description="One text or a list of texts; token ids as TEI takes them: one input's "
        "ids ([101, 7592, 102]), or a batch mixing texts and lists of ids. Ids are embedded "
        "as given (no special tokens added).",
    )
    normalize: bool = Field(True, description="Unit-length vectors (TEI's default).")
    dimensions: int | None = Field(None, ge=1, description="Keep the first n dimensions.")
    prompt_name: str | None = _prompt_name()


class TeiEmbedSparseRequest(_TeiRequest):
    """``POST /embed_sparse``: a SPLADE model's sparse vectors."""

    inputs: StrictStr | list[StrictStr] = Field(description="One text or a list of texts.")
    prompt_name: str | None = _prompt_name()


class TeiSparseValue(BaseModel):
    """One non-zero entry of a sparse vector (entries come by increasing index)."""

    index: int = Field(description="The vocabulary entry (token id).")
    value: float


class TeiEmbedAllRequest(_TeiRequest):
    """``POST /embed_all``: every token's vector, without pooling."""

    inputs: StrictStr | list[StrictStr] = Field(description="One text or a list of texts.")
    prompt_name: str | None = _prompt_name()


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
    prompt_name: str | None = _prompt_name()


class TeiSimilarityRequest(BaseModel):
    """``POST /similarity``: cosine similarity of each sentence to the source sentence."""

    model_config = ConfigDict(extra="forbid")
    inputs: SimilarityInputs
    parameters: TeiSimilarityParameters | None = None


class TeiDecodeRequest(BaseModel):
    """``POST /decode``: token ids back to text."""

    model_config = ConfigDict(extra="forbid")
    ids: TeiInputIds = Field(description="One input's token ids, or a list of them.")
    skip_special_tokens: bool = Field(True, description="Leave special tokens out of the text.")


class TeiTokenizeRequest(BaseModel):
    """``POST /tokenize``."""

    model_config = ConfigDict(extra="forbid")
    inputs: StrictStr | list[StrictStr]
    add_special_tokens: bool = True
    prompt_name: str | None = _prompt_name()
    offsets: Literal["bytes", "chars"] = Field(
        "bytes", description="Extension: what `start`/`stop` count: UTF-8 bytes (TEI's) or "
        "characters (Python's `text[start:stop]`).",
    )


class TeiToken(BaseModel):
    id: int
    text: str = Field(description="The token's span of the input (special tokens: the token).")
    special: bool
    start: int | None = Field(description="Offsets in the input, in UTF-8 bytes as TEI's (in "
                              "characters with `offsets: chars`); null if special.")
    stop: int | None


class TeiInfo(BaseModel):
    """``GET /info`` (TEI's fields, router/src/lib.rs ``Info``) for one served model, plus
    ``name`` and ``task``."""

    model_id: str
    model_sha: str | None
    model_dtype: str = Field(description="The dtype the model replica runs (e.g. float32).")
    served_model_name: str = Field(description="The served name.")
    model_type: dict[str, Any] = Field(
        description='{"embedding": {"pooling"}}, {"classifier": {"id2label", "label2id"}} or '
        '{"reranker": {"id2label", "label2id"}} as TEI reports it. An embedding model\'s '
        'text-ranking view (cosine ranking) is a reranker with one label, '
        '{"id2label": {"0": "score"}, "label2id": {"score": 0}}; a token-embedding model '
        'has pooling null; other tasks: {"<task>": {}}.'
    )
    max_concurrent_requests: int
    max_input_length: int = Field(description="Tokens per input (the model window).")
    max_batch_tokens: int = Field(description="Tokens of one model batch (texts × window).")
    max_batch_requests: int | None = Field(description="Texts of one model batch.")
    max_client_batch_size: int = Field(description="Inputs one request may send.")
    auto_truncate: bool = True
    tokenization_workers: int
    version: str
    sha: str | None = Field(None, description="The server's git commit (not recorded: null).")
    docker_label: str | None = Field(None, description="The server's image label (null).")
    name: str = Field(description="The served name (this project serves several models).")
    task: str


class TeiInfoList(TeiInfo):
    """``GET /info``: the default model's info, and every model's under ``models``."""

    models: dict[str, TeiInfo]
