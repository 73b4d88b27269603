"""OpenAI's API: ``/v1/embeddings`` and ``/v1/models`` bodies, and OpenAI's error body
(every ``/v1/...`` route's; the generation routes' bodies are in ``openai_generation``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StrictStr,
    model_validator,
)

from serving.schemas.text import refuse_unreadable_text


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error (the client's) or server_error.")
    param: str | None = Field(None, description="The request field at fault, if one is.")
    code: str | None = Field(None, description="model_not_found, invalid_api_key, "
                             "context_length_exceeded, or our error type (overloaded...).")


class OpenAIErrorBody(BaseModel):
    """What every ``/v1/...`` route answers on error (400 for invalid input, not 422)."""

    error: OpenAIErrorDetail


class ModelCard(BaseModel):
    """An entry of GET /v1/models (OpenAI list format plus the task)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "transformers-serve"
    task: str
    model: str | None = Field(None, description="What the model was loaded from (a pool "
                              "member: its id; a pool: none).")
    pipeline: str = Field(description="The model deployments answering (differs for views "
                          "and pool members).")
    members: int | None = Field(None, description="A model pool: how many members it has.")
    loaded_on: list[str] | None = Field(
        None, description="A pool member: the replicas that hold it now (as the replicas the "
        "listing reached reported).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ``EmbeddingsRequest.embedding_type``: Cohere's spellings, and sentence-transformers' float.
EmbeddingType = Literal["float", "float32", "int8", "uint8", "binary", "ubinary"]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``, as OpenAI's embeddings API takes it."""

    model: str = Field(description="A served feature-extraction model with sentence pooling.")
    input: StrictStr | list[StrictStr] | list[int] | list[list[int]] = Field(
        description="One text or a list of texts (token-id inputs are refused with 422)."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64': each vector as little-endian float32 bytes, base64 "
        "(quantized vectors too: their integer values as float32, so OpenAI's clients, which "
        "ask for base64 by default, read them back unchanged)."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first n dimensions (re-normalised); only for "
        "models whose config lists `matryoshka_dimensions`.",
    )
    embedding_type: EmbeddingType = Field(
        "float", description="Quantize the vectors as sentence-transformers' "
        "quantize_embeddings does (Cohere's embedding_types names; 'float32' = 'float'): "
        "int8/uint8 scale each dimension by its minimum and maximum over this request's "
        "vectors (at least 2 inputs); binary (int8) / ubinary (uint8) pack one bit (> 0) "
        "per dimension, 8 to a byte. After `dimensions`.",
    )
    user: str | None = Field(None, description="Accepted and ignored.")

    @model_validator(mode="before")
    @classmethod
    def _readable_text(cls, data: Any) -> Any:
        return refuse_unreadable_text(data)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[int] | list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read (after truncation).")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage
