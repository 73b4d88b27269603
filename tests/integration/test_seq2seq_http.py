"""summarization, translation, text2text-generation over HTTP against the session app:
parity with the golden answers of the transformers 4.x pipelines, batching, 422s and
concurrent requests with different settings."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden"
                     / "seq2seq_answers.json").read_text())
# served name of each (golden model, task), see tests/conftest.py
SERVED = {
    ("tiny-bart", "summarization"): "bart-summarize",
    ("tiny-bart", "text2text-generation"): "bart-text2text",
    ("tiny-t5", "summarization"): "t5-summarize",
    ("tiny-t5", "translation"): "t5-translate",
    ("tiny-t5", "text2text-generation"): "t5-text2text",
    ("tiny-marian", "translation"): "marian-translate",
    ("tiny-marian", "text2text-generation"): "marian-text2text",
}
CASES = [
    pytest.param(model, task, index, id=f"{SERVED[model, task]}-{index}")
    for (model, task) in SERVED
    for index in range(len(GOLDEN["models"][model]["tasks"][task]["cases"]))
]
LONG = "paris is a city and the capital of music. " * 40


@pytest.mark.parametrize(("model", "task", "index"), CASES)
def test_equals_the_4x_pipeline(http, model, task, index):
    case = GOLDEN["models"][model]["tasks"][task]["cases"][index]
    response = http.post(f"/models/{SERVED[model, task]}",
                         json={"inputs": case["inputs"], "parameters": case["parameters"]})
    assert response.status_code == 200, response.text
    assert response.json() == case["expected"]


def test_batched_mixed_lengths_equal_single_requests(http):
    texts = ["the movie", LONG, "Café naïve in Zürich 🙂, 東京", "a", "hello world " * 5]
    parameters = {"max_new_tokens": 5, "num_beams": 2}
    batch = http.post("/models/bart-summarize", json={"inputs": texts,
                                                      "parameters": parameters})
    assert batch.status_code == 200, batch.text
    alone = [http.post("/models/bart-summarize",
                       json={"inputs": t, "parameters": parameters}).json()[0] for t in texts]
    assert batch.json() == alone
    assert all(set(item) == {"summary_text"} for item in alone)


def test_answer_keys(http):
    for name, key in (("t5-translate", "translation_text"), ("t5-summarize", "summary_text"),
                      ("t5-text2text", "generated_text")):
        response = http.post(f"/models/{name}", json={"inputs": "the movie",
                                                      "parameters": {"max_new_tokens": 2}})
        assert response.status_code == 200, response.text
        assert list(response.json()[0]) == [key]


@pytest.mark.parametrize(("name", "parameters", "fragment"), [
    ("bart-summarize", {"max_new_tokens": 100_000}, "parameters.max_new_tokens"),
    ("bart-summarize", {"max_new_tokens": 500}, "parameters.max_new_tokens"),  # > positions
    ("bart-summarize", {"max_length": 500}, "parameters.max_length"),
    ("bart-text2text", {"num_beams": 1000}, "parameters.num_beams"),
    ("t5-text2text", {"temperature": -1.0, "do_sample": True}, "parameters.temperature"),
    ("t5-text2text", {"min_length": -1}, "parameters.min_length"),
    ("t5-text2text", {"top_p": 2}, "parameters.top_p"),
    ("t5-translate", {"src_lang": "en"}, "parameters.tgt_lang"),
    ("t5-summarize", {"src_lang": "en", "tgt_lang": "de"}, "parameters.src_lang"),
    ("t5-summarize", {"return_full_text": False}, "parameters.return_full_text"),
])
def test_bad_parameters_are_422_naming_them(http, name, parameters, fragment):
    response = http.post(f"/models/{name}", json={"inputs": "the movie",
                                                  "parameters": parameters})
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


def test_long_input_is_truncated_unless_truncation_is_false(http):
    ok = http.post("/models/bart-summarize",
                   json={"inputs": LONG, "parameters": {"max_new_tokens": 3}})
    assert ok.status_code == 200, ok.text
    refused = http.post("/models/bart-summarize", json={
        "inputs": ["short", LONG], "parameters": {"max_new_tokens": 3, "truncation": False}})
    assert refused.status_code == 422, refused.text
    assert "inputs[1]" in refused.json()["error"]


@pytest.mark.parametrize(("name", "key"), [("t5-summarize", "summary_text"),
                                         ("bart-summarize", "summary_text"),
                                         ("marian-translate", "translation_text")])
def test_greedy_answers_stream_token_by_token(http, name, key):
    body = {"inputs": "the movie was great", "parameters": {"num_beams": 1, "max_new_tokens": 9}}
    (expected,) = http.post(f"/models/{name}", json=body).json()
    with http.stream("POST", f"/models/{name}", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines()
                  if line.startswith("data: ")]
    assert 1 < len(events) <= 9
    assert all(event["generated_text"] is None for event in events[:-1])
    assert events[-1]["generated_text"] == expected[key]


def test_beam_search_cannot_stream(http):
    response = http.post("/models/bart-summarize", json={"inputs": "the movie", "stream": True})
    assert response.status_code == 422, response.text
    assert "num_beams" in response.json()["error"]


def test_concurrent_requests_get_their_own_answers(http):
    lengths = [1, 2, 3, 5, 8, 13] * 2

    def ask(n: int):
        return http.post("/models/bart-text2text", json={
            "inputs": ["the movie", "hello world"],
            "parameters": {"max_new_tokens": n, "num_beams": 1}}).json()

    expected = {n: ask(n) for n in set(lengths)}
    with ThreadPoolExecutor(len(lengths)) as pool:
        answers = list(pool.map(ask, lengths))
    for n, answer in zip(lengths, answers, strict=True):
        assert answer == expected[n]
    assert len({json.dumps(a) for a in expected.values()}) > 1


def test_summarization_view_still_served(http):
    response = http.get("/v1/models")
    tasks = {card["id"]: card["task"] for card in response.json()["data"]}
    assert tasks["minilm-summarize"] == "summarization"
    assert tasks["bart-summarize"] == "summarization"


def test_health_probes_the_seq2seq_models(http):
    models = http.get("/health").json()["models"]
    assert all(models[name] == "ok" for name in SERVED.values()), models
