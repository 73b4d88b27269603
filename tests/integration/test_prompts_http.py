"""Prompts from a model's sentence-transformers config (``prompt_name`` and the default
prompt) and left truncation, on TEI's, the Inference API's and OpenAI's routes: the same
vectors as SentenceTransformer.encode."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

TEXTS = ["the movie was great", "paris is the capital of france"]
# Longer than MiniLM's 256-token window, with different starts and ends.
LONG = "Ray Serve starts here. " + "filler words " * 200 + "It ends with this sentence."


@pytest.fixture(scope="module")
def prompted(model_dirs) -> SentenceTransformer:
    return SentenceTransformer(str(model_dirs["st-prompts"]), device="cpu")


def _post(http, path: str, body: dict) -> list:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_default_prompt_applies_as_in_sentence_transformers(http, prompted):
    expected = prompted.encode(TEXTS)  # applies default_prompt_name ("document")
    assert not np.allclose(expected, prompted.encode(TEXTS, prompt=""), atol=1e-3)
    tei = _post(http, "/models/tiny-st-prompts/embed", {"inputs": TEXTS})
    np.testing.assert_allclose(tei, expected, atol=1e-5)
    ours = _post(http, "/models/tiny-st-prompts", {"inputs": TEXTS})
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    openai = _post(http, "/v1/embeddings", {"model": "tiny-st-prompts", "input": TEXTS})
    np.testing.assert_allclose([d["embedding"] for d in openai["data"]], expected, atol=1e-5)


def test_a_named_prompt_applies_on_every_route(http, prompted):
    expected = prompted.encode(TEXTS, prompt_name="query")
    tei = _post(http, "/models/tiny-st-prompts/embed",
                {"inputs": TEXTS, "prompt_name": "query"})
    np.testing.assert_allclose(tei, expected, atol=1e-5)
    ours = _post(http, "/models/tiny-st-prompts",
                 {"inputs": TEXTS, "parameters": {"prompt_name": "query"}})
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    pair = {"source_sentence": TEXTS[0], "sentences": [TEXTS[1]]}
    similarity = _post(http, "/models/tiny-st-prompts/similarity",
                       {"inputs": pair, "parameters": {"prompt_name": "query"}})
    np.testing.assert_allclose(similarity, [float(expected[0] @ expected[1])], atol=1e-5)


@pytest.mark.parametrize(("path", "body"), [
    ("/models/tiny-st-prompts/embed", {"inputs": "x", "prompt_name": "passage"}),
    ("/models/tiny-st-prompts", {"inputs": "x", "parameters": {"prompt_name": "passage"}}),
    ("/models/tiny-st/embed", {"inputs": "x", "prompt_name": "query"}),  # has no prompts
])
def test_an_unknown_prompt_is_refused(http, path, body):
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert "prompt_name" in response.json()["error"]


def test_left_truncation_keeps_the_end_of_long_inputs(http, minilm_dir):
    model = SentenceTransformer(str(minilm_dir), device="cpu")
    right = model.encode([LONG])
    model.tokenizer.truncation_side = "left"
    left = model.encode([LONG])
    assert not np.allclose(left, right, atol=1e-2)
    for direction, expected in [("left", left), ("Left", left), ("right", right)]:
        vectors = _post(http, "/embed", {"inputs": [LONG], "truncation_direction": direction})
        np.testing.assert_allclose(vectors, expected, atol=1e-4)
    ours = _post(http, "/models/minilm",
                 {"inputs": [LONG], "parameters": {"truncation_direction": "left"}})
    np.testing.assert_allclose(ours, left, atol=1e-4)


def test_left_and_right_requests_sent_together_each_get_their_own(http):
    import concurrent.futures

    bodies = [{"inputs": [LONG], "truncation_direction": side} for side in ["left", "right"] * 4]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: _post(http, "/embed", body), bodies))
    lefts, rights = answers[0::2], answers[1::2]
    assert all(np.allclose(a, lefts[0], atol=1e-5) for a in lefts)
    assert all(np.allclose(a, rights[0], atol=1e-5) for a in rights)
    assert not np.allclose(lefts[0], rights[0], atol=1e-2)


def test_a_task_without_left_truncation_refuses_it(http):
    response = http.post("/models/ner", json={"inputs": "Paris",
                                              "parameters": {"truncation_direction": "left"}})
    assert response.status_code == 422, response.text
    assert "truncation_direction" in response.json()["error"]


def test_tokenize_shows_the_prompted_text(http, model_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dirs["st-prompts"]))
    for body, read in [({"inputs": "the movie"}, "passage: the movie"),
                       ({"inputs": "the movie", "prompt_name": "query"}, "query: the movie")]:
        (tokens,) = _post(http, "/models/tiny-st-prompts/tokenize", body)
        assert [t["id"] for t in tokens] == tokenizer(read)["input_ids"]
        assert tokens[1]["text"] == read[0] and tokens[1]["start"] == 0
    response = http.post("/models/sentiment/tokenize", json={"inputs": "x", "prompt_name": "q"})
    assert response.status_code == 422 and "prompt_name" in response.json()["error"]
