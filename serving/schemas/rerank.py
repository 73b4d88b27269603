"""Rerank dialects: Cohere's ``/v1/rerank`` and ``/v2/rerank`` (also what Jina's, vLLM's and
Infinity's rerank clients send), and vLLM's ``/score``: request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from serving.schemas.text import refuse_unreadable_text

# Cohere's limit on documents per request; the model's max_inputs_per_request applies too.
MAX_DOCUMENTS = 10_000

# A document: a text, or (Cohere v1, Jina) an object holding its text under "text" and any
# other string fields, which come back whole in the answer.
Document = StrictStr | dict[StrictStr, StrictStr]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _readable_text(cls, data: Any) -> Any:
        return refuse_unreadable_text(data)


class RerankRequest(_Request):
    """``POST /v1/rerank``: Cohere's v1 rerank, which Jina's and vLLM's clients send too."""

    model: StrictStr | None = Field(
        None, description="A served cross-encoder or text-ranking view; default: the first "
        "served model that reranks.")
    query: StrictStr
    documents: list[Document] = Field(
        min_length=1, max_length=MAX_DOCUMENTS,
        description="Texts, or objects with a 'text' field (other fields come back whole).")
    top_n: int | None = Field(None, ge=1, description="Return the n best documents (all).")
    rank_fields: list[StrictStr] | None = Field(
        None, min_length=1, description="Rank objects on these fields, each document read as "
        "'field: value' lines in this order (default: the 'text' field).")
    return_documents: bool | None = Field(
        None, description="Each result carries its document (default: true, as Jina's; "
        "Cohere's default is false, and its clients read the document as optional).")
    max_chunks_per_doc: int | None = Field(
        None, ge=1, description="Accepted and ignored: a document longer than the model window "
        "is truncated, not split into chunks.")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Accepted and ignored: documents are cut at the model window.")


class RerankV2Request(_Request):
    """``POST /v2/rerank``: Cohere's v2 rerank (``cohere.ClientV2.rerank``)."""

    model: StrictStr = Field(description="A served cross-encoder or text-ranking view.")
    query: StrictStr
    documents: list[StrictStr] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(None, ge=1, description="Return the n best documents (all).")
    return_documents: bool | None = Field(
        None, description="Each result carries its document (default: false).")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Accepted and ignored: documents are cut at the model window.")
    priority: int | None = Field(None, ge=0, description="Accepted and ignored.")
    relevant_spans: None = Field(None, description="Not supported.")


class RerankDocument(BaseModel):
    """A result's document: ``{"text"}``, or the object sent, whole."""

    model_config = ConfigDict(extra="allow")
    text: str | None = None


class RerankResult(BaseModel):
    index: int = Field(description="The document's position in the request.")
    relevance_score: float = Field(
        description="A cross-encoder's sigmoid score, or a view's cosine similarity.")
    document: RerankDocument | None = Field(None, description="With return_documents.")


class RerankUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the query and documents, each counted "
                               "once (after truncation).")
    total_tokens: int


class ApiVersion(BaseModel):
    version: str


class MetaTokens(BaseModel):
    input_tokens: int
    output_tokens: int = 0


class RerankMeta(BaseModel):
    api_version: ApiVersion
    tokens: MetaTokens


class RerankResponse(BaseModel):
    """Cohere's answer (``id``, ``results``, ``meta``) with Jina's and vLLM's fields
    (``model``, ``usage``): one body that each of their clients reads."""

    id: str
    model: str
    results: list[RerankResult] = Field(description="Best first.")
    usage: RerankUsage
    meta: RerankMeta


class ScoreRequest(_Request):
    """``POST /score`` and ``/v1/score``, as vLLM takes them: ``text_1`` against ``text_2``,
    one to one, one to many or pairwise (N to N)."""

    model: StrictStr | None = Field(
        None, description="A served cross-encoder or text-ranking view; default: the first "
        "served model that reranks.")
    text_1: StrictStr | list[StrictStr] = Field(description="One text, or one per pair.")
    text_2: StrictStr | list[StrictStr] = Field(description="One text, or one per pair.")


class ScoreData(BaseModel):
    index: int = Field(description="The pair's position.")
    object: Literal["score"] = "score"
    score: float


class ScoreUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of every distinct text_1 and of each "
                               "text_2 (after truncation).")
    total_tokens: int
    completion_tokens: int = 0


class ScoreResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreData] = Field(description="In the order of the pairs.")
    usage: ScoreUsage
