"""OpenAI-compatible embeddings, driven by the real ``openai`` client."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

TEXTS = ["Ray Serve batches requests.", "café 東京 🙂", "A much longer sentence " * 40]


@pytest.fixture(scope="module")
def client(served_app):
    # The client sends its API key as a bearer token; with auth off it must be accepted.
    return openai.OpenAI(base_url=f"{served_app}/v1", api_key="sk-unused", max_retries=0)


@pytest.fixture(scope="module")
def reference(minilm_dir):
    return SentenceTransformer(str(minilm_dir), device="cpu")


def _window_tokens(model_dir, texts, window):
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return sum(min(len(ids), window) for ids in tokenizer(texts)["input_ids"])


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_embeddings_equal_sentence_transformers(client, reference, minilm_dir,
                                                encoding_format):
    response = client.embeddings.create(model="minilm", input=TEXTS,
                                        encoding_format=encoding_format)
    assert response.object == "list" and response.model == "minilm"
    assert [item.index for item in response.data] == [0, 1, 2]
    # Asked for base64 explicitly, the client hands the strings back undecoded.
    vectors = np.array([
        np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
        if encoding_format == "base64" else item.embedding for item in response.data
    ], dtype=np.float32)
    np.testing.assert_allclose(vectors, reference.encode(TEXTS), atol=1e-5)
    assert response.usage.prompt_tokens == _window_tokens(minilm_dir, TEXTS, 256)
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_client_default_encoding_and_one_string(client, reference):
    response = client.embeddings.create(model="minilm", input=TEXTS[0])
    (item,) = response.data
    np.testing.assert_allclose(item.embedding, reference.encode(TEXTS[0]), atol=1e-5)


def test_base64_is_little_endian_float32(http, reference):
    body = http.post("/v1/embeddings", json={"model": "minilm", "input": TEXTS[:1],
                                             "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, reference.encode(TEXTS[0]), atol=1e-5)


def test_dimensions_are_refused_for_a_model_not_trained_for_them(client):
    """all-MiniLM-L6-v2 was not trained for Matryoshka: its config does not list sizes."""
    with pytest.raises(openai.BadRequestError) as failure:
        client.embeddings.create(model="minilm", input=TEXTS[:2], dimensions=64)
    error = failure.value.response.json()["error"]
    assert error["param"] == "dimensions" and "matryoshka_dimensions" in error["message"]


def test_dimensions_keep_the_first_ones_renormalised(client, model_dirs):
    """A model configured with matryoshka_dimensions: as sentence-transformers' truncate_dim
    (then normalized)."""
    reference = SentenceTransformer(str(model_dirs["st"]), device="cpu")
    response = client.embeddings.create(model="tiny-st-colocated", input=TEXTS[:2],
                                        dimensions=8)
    want = reference.encode(TEXTS[:2], truncate_dim=8, normalize_embeddings=True)
    got = np.array([item.embedding for item in response.data])
    assert got.shape == (2, 8)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_colocated_tokenizer_model_counts_tokens_too(client, model_dirs):
    response = client.embeddings.create(model="tiny-st-colocated", input=TEXTS)
    assert len(response.data) == 3
    assert response.usage.prompt_tokens == _window_tokens(model_dirs["st"], TEXTS, 48)


@pytest.mark.parametrize("model", ["minilm", "tiny-st-colocated"])
def test_token_ids_embed_like_their_text(client, http, minilm_dir, model_dirs, model):
    """Ids of the model's own tokenizer (no special tokens: the server adds them, as for a
    text) give the text's embedding; long ones are cut to the window like a text."""
    directory = minilm_dir if model == "minilm" else model_dirs["st"]
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    ids = tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    by_ids = client.embeddings.create(model=model, input=ids)
    by_text = client.embeddings.create(model=model, input=TEXTS)
    np.testing.assert_allclose([d.embedding for d in by_ids.data],
                               [d.embedding for d in by_text.data], atol=1e-6)
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens
    (one,) = client.embeddings.create(model=model, input=ids[0]).data  # one list of ids
    np.testing.assert_allclose(one.embedding, by_text.data[0].embedding, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "mentions"),
    [
        ({"model": "nope", "input": "x"}, openai.NotFoundError, "nope"),
        ({"model": "sentiment", "input": "x"}, openai.BadRequestError, "feature-extraction"),
        ({"model": "minilm", "input": [[1, 2, 3], [30522]]}, openai.BadRequestError,
         "input[1]: token id 30522"),
        ({"model": "minilm", "input": [[1], []]}, openai.BadRequestError,
         "input[1] is an empty list"),
        ({"model": "minilm", "input": [[1] * 300], "dimensions": 4096},
         openai.BadRequestError, "dimensions"),
        ({"model": "minilm", "input": "x", "dimensions": 4096}, openai.BadRequestError,
         "dimensions"),
        ({"model": "tiny-st-colocated", "input": "x", "dimensions": 4}, openai.BadRequestError,
         "dimensions: 4 is below the smallest size"),
        ({"model": "tiny-st-colocated", "input": "x", "dimensions": 64},
         openai.BadRequestError, "dimensions: 64 is more than the model's 32"),
        ({"model": "minilm", "input": ""}, openai.BadRequestError, "input"),
        ({"model": "minilm", "input": "x", "encoding_format": "int8"}, openai.BadRequestError,
         "encoding_format"),
    ],
)
def test_bad_requests_are_clear_4xx_in_openai_shape(client, kwargs, error, mentions):
    """404 for an unknown model, 400 (not 422) for invalid input: the client's own errors."""
    with pytest.raises(error) as failure:
        client.embeddings.create(**kwargs)
    body = failure.value.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert mentions in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    if error is openai.NotFoundError:
        assert body["error"]["code"] == "model_not_found"


def test_retrieve_one_model_as_listed(client):
    """``client.models.retrieve(id)``: the card ``GET /v1/models`` lists, a pool member's
    (``pool/member``, which the client sends percent-encoded) too; 404 in OpenAI's shape."""
    listed = {card.id: card for card in client.models.list().data}
    for name in ("minilm", "minilm-rerank", "customers", "customers/m00"):
        card = client.models.retrieve(name)
        assert card.id == name and card.object == "model"
        # loaded_on: the replicas holding a member now, as each listing found them
        assert (card.model_dump(exclude={"loaded_on"})
                == listed[name].model_dump(exclude={"loaded_on"}))
    assert isinstance(client.models.retrieve("customers/m00").loaded_on, list)
    assert client.models.retrieve("minilm").task == "feature-extraction"  # our extra field
    for unknown in ("nope", "customers/m99", "minilm/extra"):
        with pytest.raises(openai.NotFoundError) as failure:
            client.models.retrieve(unknown)
        error = failure.value.response.json()["error"]
        assert error["code"] == "model_not_found" and unknown in error["message"], error
