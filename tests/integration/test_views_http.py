"""Embedding views of the real MiniLM over HTTP: rerank, zero-shot by similarity, extractive
summarization, all answered by the minilm model's replicas."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from serving.tasks.embedding_views import ZERO_SHOT_SCALE, split_sentences

DOCUMENT = (
    "Ray Serve is a scalable model serving library. It runs on a Ray cluster. "
    "Dynamic batching groups requests so the model runs on larger batches! "
    "The weather in Paris was sunny yesterday. "
    "Serving many models on one GPU needs fractional GPU allocation."
)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return SentenceTransformer(str(minilm_dir))


def _post(http, name, payload, status=200):
    response = http.post(f"/models/{name}", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def test_rerank_sorts_by_cosine_similarity(http, minilm):
    query = "What is the capital of France?"
    texts = ["Bananas are yellow.", "Paris is the capital of France.", "Berlin is in Germany."]
    expected = minilm.similarity(minilm.encode([query]), minilm.encode(texts))[0].numpy()
    ranked = _post(http, "minilm-rerank", {"inputs": {"query": query, "texts": texts}})
    assert [entry["index"] for entry in ranked] == list(np.argsort(-expected))
    assert np.allclose([e["score"] for e in ranked], np.sort(expected)[::-1], atol=1e-5)
    top = _post(http, "minilm-rerank", {"inputs": {"query": query, "texts": texts},
                                        "parameters": {"top_n": 1, "return_text": True}})
    assert top == [{"index": 1, "score": ranked[0]["score"], "text": texts[1]}]


def test_zero_shot_by_similarity(http, minilm):
    text, labels = "The team won the championship game last night.", ["cooking", "sports",
                                                                         "politics"]
    answer = _post(http, "minilm-zero-shot",
                   {"inputs": text, "parameters": {"candidate_labels": labels}})
    assert answer["sequence"] == text and answer["labels"][0] == "sports"
    hypotheses = [f"This example is {label}." for label in labels]
    similarity = minilm.similarity(minilm.encode([text]), minilm.encode(hypotheses))[0].numpy()
    probabilities = np.exp(ZERO_SHOT_SCALE * similarity)
    probabilities /= probabilities.sum()
    by_label = dict(zip(answer["labels"], answer["scores"], strict=True))
    assert np.allclose([by_label[label] for label in labels], probabilities, atol=1e-4)
    assert abs(sum(answer["scores"]) - 1) < 1e-5


def test_zero_shot_multi_label_and_lists(http):
    payload = {"inputs": ["I baked bread.", "The election results are in."],
               "parameters": {"candidate_labels": "cooking, politics", "multi_label": True}}
    answers = _post(http, "minilm-zero-shot", payload)
    assert [a["labels"][0] for a in answers] == ["cooking", "politics"]
    assert all(0 <= score <= 1 for a in answers for score in a["scores"])


def test_zero_shot_needs_labels(http):
    body = _post(http, "minilm-zero-shot", {"inputs": "x"}, status=422)
    assert "candidate_labels" in body["error"]


def test_extractive_summary_keeps_central_sentences_in_order(http):
    (summary,) = _post(http, "minilm-summarize",
                       {"inputs": DOCUMENT, "parameters": {"max_sentences": 2}})
    sentences = split_sentences(DOCUMENT)
    chosen = [s for s in sentences if s in summary["summary_text"]]
    assert len(chosen) == 2
    assert summary["summary_text"] == " ".join(chosen)  # original order
    assert "weather" not in summary["summary_text"]  # the off-topic sentence is dropped


def test_summaries_of_several_documents(http):
    answers = _post(http, "minilm-summarize", {"inputs": [DOCUMENT, "One sentence only."]})
    assert len(answers) == 2 and answers[1] == {"summary_text": "One sentence only."}


def test_views_are_listed_and_healthy(http):
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert cards["minilm-rerank"]["task"] == "text-ranking"
    assert cards["minilm-summarize"]["pipeline"] == "minilm"
    assert http.get("/health").json()["models"]["minilm-zero-shot"] == "ok"


def test_views_need_a_sentence_embedding_model_in_the_config():
    from pydantic import ValidationError

    from serving.config import ModelSpec

    with pytest.raises(ValidationError, match="feature-extraction"):
        ModelSpec(name="x", task="text-classification", model="org/model",
                  views=[{"name": "y", "task": "text-ranking"}])
