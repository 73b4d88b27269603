"""Text Embeddings Inference (TEI): its request bodies and field names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
)

from serving.schemas.inference_api import SimilarityInputs


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
