"""text-generation over HTTP against the session app, compared with ``transformers.pipeline``;
streaming as Server-Sent Events."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from transformers import pipeline

PROMPTS = ["the movie", "hello world, the capital of France is", "café 東京 🙂"]


@pytest.fixture(scope="module")
def reference(model_dirs):
    return pipeline("text-generation", model=str(model_dirs["gpt2"]), device="cpu")


@pytest.mark.parametrize("parameters", [
    {"max_new_tokens": 10},
    {"max_new_tokens": 8, "num_beams": 3},
    {"max_new_tokens": 6, "return_full_text": False},
])
def test_equals_pipeline(http, reference, parameters):
    response = http.post("/models/gpt2", json={"inputs": PROMPTS, "parameters": parameters})
    assert response.status_code == 200, response.text
    assert response.json() == [reference(t, do_sample=False, **parameters) for t in PROMPTS]
    single = http.post("/models/gpt2", json={"inputs": PROMPTS[0], "parameters": parameters})
    assert single.json() == reference(PROMPTS[0], do_sample=False, **parameters)


@pytest.mark.parametrize(("parameters", "name"), [
    ({"max_new_tokens": 100_000}, "max_new_tokens"),
    ({"max_new_tokens": 2000}, "max_new_tokens"),  # within 1..2048 but beyond the window
    ({"num_beams": 1000}, "num_beams"),
    ({"temperature": -1.0, "do_sample": True}, "temperature"),
])
def test_bad_parameters_are_422_naming_them(http, parameters, name):
    response = http.post("/models/gpt2", json={"inputs": "the movie", "parameters": parameters})
    assert response.status_code == 422, response.text
    assert f"parameters.{name}" in response.json()["error"]


def test_concurrent_requests_get_their_own_answers(http, reference):
    lengths = [1, 2, 3, 5, 8, 13] * 2

    def ask(n: int):
        return http.post("/models/gpt2", json={"inputs": "the movie",
                                               "parameters": {"max_new_tokens": n}}).json()

    with ThreadPoolExecutor(len(lengths)) as pool:
        answers = list(pool.map(ask, lengths))
    for n, answer in zip(lengths, answers, strict=True):
        assert answer == reference("the movie", do_sample=False, max_new_tokens=n)


def test_seeded_sampling_is_reproducible(http):
    body = {"inputs": PROMPTS, "parameters": {"do_sample": True, "seed": 11,
                                              "max_new_tokens": 8}}
    assert http.post("/models/gpt2", json=body).json() == http.post("/models/gpt2",
                                                                    json=body).json()


def _events(response) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in response.iter_lines()
            if line.startswith("data: ")]


@pytest.mark.parametrize("body", [
    {"inputs": "café 東京", "parameters": {"max_new_tokens": 12, "stream": True}},
    {"inputs": "café 東京", "parameters": {"max_new_tokens": 12}, "stream": True},
])
def test_streaming_events_concatenate_to_the_answer(http, body):
    plain = {"inputs": body["inputs"], "parameters": {"max_new_tokens": 12}}
    (expected,) = http.post("/models/gpt2", json=plain).json()
    with http.stream("POST", "/models/gpt2", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
    assert len(events) == 12
    assert all(event["generated_text"] is None for event in events[:-1])
    assert events[-1]["generated_text"] == expected["generated_text"]
    assert body["inputs"] + "".join(e["token"]["text"] for e in events) == \
        expected["generated_text"]


def test_streaming_errors_before_the_first_token_are_json(http):
    response = http.post("/models/gpt2", json={
        "inputs": "the movie", "parameters": {"max_new_tokens": 2000, "stream": True}})
    assert response.status_code == 422
    assert "parameters.max_new_tokens" in response.json()["error"]
    other = http.post("/models/sentiment", json={"inputs": "good", "stream": True})
    assert other.status_code == 422


def test_health_probes_the_generator(http):
    response = http.get("/health")
    assert response.json()["models"]["gpt2"] == "ok"


def test_gpt2_decodes_with_continuous_batching(served_app):
    from ray import serve

    generator = serve.get_deployment_handle("gpt2-generator", app_name="test")
    described = generator.describe.remote().result()
    assert described["scheduler"] == "continuous"


# Different prompts, lengths and settings sharing the running batch: greedy (with and without
# repetition penalty, stop sequences, new text only), seeded sampling, and beam search (which
# decodes through generate() beside the running batch).
MIXED = [
    {"inputs": prompt, "parameters": parameters}
    for prompt in ("the movie", "hello world, the capital of France is")
    for parameters in (
        {"max_new_tokens": 3},
        {"max_new_tokens": 40},
        {"max_new_tokens": 17, "repetition_penalty": 1.5},
        {"max_new_tokens": 25, "return_full_text": False},
        {"max_new_tokens": 30, "stop": ["e"]},
        {"max_new_tokens": 12, "do_sample": True, "seed": 3, "temperature": 0.9, "top_k": 20},
        {"max_new_tokens": 9, "num_beams": 2},
    )
]


def test_concurrent_mixed_requests_each_get_their_answer_alone(http, reference):
    def ask(body: dict) -> dict:
        response = http.post("/models/gpt2", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(len(MIXED)) as pool:
        together = list(pool.map(ask, MIXED))
    for body, answer in zip(MIXED, together, strict=True):
        assert answer == ask(body), body  # the same request sent alone
        parameters = dict(body["parameters"])
        if not parameters.get("do_sample"):
            stop = parameters.pop("stop", None)
            expected = reference(body["inputs"], do_sample=False, **parameters)
            if stop:  # the pipeline generates on; the answer ends before the stop sequence
                text = expected[0]["generated_text"][len(body["inputs"]):]
                expected = [{"generated_text": body["inputs"] + text.split(stop[0])[0]}]
            assert answer == expected, body


def test_details_say_why_generation_ended(http, model_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dirs["gpt2"])
    body = {"inputs": "the movie", "parameters": {"max_new_tokens": 5, "details": True}}
    (answer,) = http.post("/models/gpt2", json=body).json()
    details = answer["details"]
    assert details["prompt_tokens"] == len(tokenizer("the movie")["input_ids"])
    if details["finish_reason"] == "length":
        assert details["generated_tokens"] == 5
    else:
        assert details["finish_reason"] == "eos_token" and details["generated_tokens"] <= 5
    stopped = http.post("/models/gpt2", json={"inputs": "the movie", "parameters": {
        "max_new_tokens": 40, "stop": ["e"], "details": True}}).json()[0]
    if "e" in http.post("/models/gpt2", json={"inputs": "the movie", "parameters": {
            "max_new_tokens": 40, "return_full_text": False}}).json()[0]["generated_text"]:
        assert stopped["details"]["finish_reason"] == "stop_sequence"
