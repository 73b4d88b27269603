"""LangChain's ``OpenAIEmbeddings`` (langchain-openai) against a running server, configured
as docs/api/openai.md tells LangChain users: the same vectors as sentence-transformers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langchain_openai import OpenAIEmbeddings
from sentence_transformers import SentenceTransformer

TEXTS = ["Ray Serve batches requests.", "LangChain retrieves documents.", "A third one."]


@pytest.fixture(scope="module")
def embeddings(served_app) -> OpenAIEmbeddings:
    # check_embedding_ctx_length=False: LangChain then sends the texts, not tiktoken ids.
    return OpenAIEmbeddings(model="minilm", base_url=f"{served_app}/v1", api_key="unused",
                            check_embedding_ctx_length=False)


@pytest.fixture(scope="module")
def expected(minilm_dir) -> np.ndarray:
    return SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)


def test_embed_documents_and_query(embeddings, expected):
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), expected, atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[1]), expected[1], atol=1e-5)


def test_async_and_in_chunks(served_app, expected):
    chunked = OpenAIEmbeddings(model="minilm", base_url=f"{served_app}/v1", api_key="unused",
                               check_embedding_ctx_length=False, chunk_size=2)
    vectors = asyncio.run(chunked.aembed_documents(TEXTS))  # two requests: 2 texts, then 1
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_dimensions_of_a_model_not_trained_for_them_are_refused(served_app):
    import openai

    cut = OpenAIEmbeddings(model="minilm", base_url=f"{served_app}/v1", api_key="unused",
                           check_embedding_ctx_length=False, dimensions=64)
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        cut.embed_documents(TEXTS)
