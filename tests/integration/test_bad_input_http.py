"""Bad input over HTTP gets a clear 4xx naming the problem, never a 500 (issue 6).

Complements the per-task tables (test_http.py, test_*_http.py): raw bodies that are not
JSON objects, text that is not Unicode, NUL and control characters, limits on every kind
of input, routes that do not fit the model, and absurd parameters on every task. Each row
posts its body as raw bytes, so NaN, Infinity and invalid UTF-8 reach the server as sent.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from serving.errors import speaks_tei

LONG = "hello world " * 300  # longer than every test model's window
GENERATORS = {"t5-summarize", "marian-translate"}
JSON = {"content-type": "application/json"}


def _raw(payload) -> bytes:
    """``payload`` as the body bytes: bytes as they are, else JSON with NaN/Infinity raw."""
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


# OpenAI's routes (/v1/...) answer OpenAI's error shape: our status and error type there.
_OPENAI_STATUS = {422: 400}
_OPENAI_CODE = {"validation": None, "input_too_long": "context_length_exceeded",
                "not_found": "model_not_found"}


# TEI's routes answer TEI's error types (router/src/lib.rs ErrorType) with our status.
_TEI_TYPE = {"overloaded": "Overloaded", "unhealthy": "Unhealthy", "timeout": "Backend",
             "backend": "Backend"}


def _assert_error(response, status: int, error_type: str, *mentions: str) -> None:
    body = response.json()
    if speaks_tei(response.request.url.path):
        assert response.status_code == status, response.text
        assert body == {"error": body["error"],
                        "error_type": _TEI_TYPE.get(error_type, "Validation")}, body
        message = body["error"]
    elif response.request.url.path.startswith("/v1/"):
        assert response.status_code == _OPENAI_STATUS.get(status, status), response.text
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["code"] == _OPENAI_CODE.get(error_type, error_type), body
        message = body["error"]["message"]
    else:
        assert response.status_code == status, response.text
        assert set(body) == {"error", "error_type"}, body
        assert body["error_type"] == error_type, body
        message = body["error"]
    for fragment in mentions:
        assert fragment in message, body


def _invalid(route: str, payload, *mentions: str, headers=JSON):
    return pytest.param(route, payload, headers, mentions, id=f"{route} {_raw(payload)[:60]!r}")


# --- bodies that are not a JSON object ---------------------------------------------------

BODIES = [
    _invalid("/models/minilm", b'{"inputs": "x",}', "not valid JSON"),
    _invalid("/models/minilm", b"{'inputs': 'x'}", "not valid JSON"),
    _invalid("/models/sentiment", b'{"inputs": ["a", "b"', "not valid JSON"),
    _invalid("/v1/embeddings", b'{"model": "minilm", "input": ', "not valid JSON"),
    _invalid("/embed", b'{"inputs": "x",}', "not valid JSON"),
    _invalid("/models/minilm/tokenize", b"[1, 2]", "must be a JSON object, not an array"),
    _invalid("/models/minilm", b"", "request body is empty"),
    _invalid("/models/minilm", b"null", "must be a JSON object, not null"),
    _invalid("/models/minilm", b"[1, 2]", "must be a JSON object, not an array"),
    _invalid("/models/minilm", b'"hello"', "must be a JSON object, not a string"),
    _invalid("/v1/embeddings", b"42", "must be a JSON object, not a number"),
    _invalid("/models/minilm", b'{"inputs": "x"}', "Content-Type: application/json",
             headers={"content-type": "text/plain"}),
    _invalid("/models/minilm", b'{"inputs": "caf\xe9"}', "not UTF-8", "0xe9"),
    _invalid("/v1/embeddings", b'{"model": "minilm", "input": "\xff"}', "not UTF-8"),
    _invalid("/models/minilm", b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
             "too deeply"),
    _invalid("/models/sentiment",
             b'{"inputs": "x", "parameters": {"top_k": ' + b"9" * 5000 + b"}}", "digits"),
]


@pytest.mark.parametrize(("route", "payload", "headers", "mentions"), BODIES)
def test_bodies_that_are_not_a_json_object_are_422(http, route, payload, headers, mentions):
    response = http.post(route, content=_raw(payload), headers=headers)
    _assert_error(response, 422, "validation", *mentions)


# --- inputs: wrong types, missing, empty, not Unicode, NUL, control characters, limits ---

INPUTS = [
    # wrong types and missing fields
    _invalid("/models/minilm", {"inputs": None}, "inputs"),
    _invalid("/models/minilm", {"inputs": True}, "inputs"),
    _invalid("/models/minilm", {"inputs": 1.5}, "inputs"),
    _invalid("/models/minilm", {"inputs": [1, 2]}, "inputs"),
    _invalid("/models/minilm", {"inputs": ["a", None]}, "inputs"),
    _invalid("/models/minilm", {"inputs": {"foo": "bar"}}, "inputs"),
    _invalid("/models/gpt2", {"inputs": [["nested", "lists"]]}, "inputs"),
    _invalid("/models/minilm", {"parameters": {}}, "inputs: Field required"),
    _invalid("/models/sentiment", {"inputs": "x", "parameters": []}, "parameters"),
    _invalid("/models/sentiment", {"inputs": "x", "parameters": None}, "parameters"),
    _invalid("/models/sentiment", {"inputs": "x", "options": "fast"}, "options"),
    _invalid("/models/gpt2", {"inputs": "x", "stream": [1]}, "stream"),
    _invalid("/v1/embeddings", {}, "model: Field required", "input: Field required"),
    _invalid("/v1/embeddings", {"model": "minilm"}, "input: Field required"),
    _invalid("/v1/embeddings", {"model": 5, "input": "x"}, "model"),
    _invalid("/v1/embeddings", {"model": "minilm", "input": None}, "input"),
    _invalid("/v1/embeddings", {"model": "minilm", "input": [1.5]}, "input"),
    _invalid("/v1/embeddings", {"model": "minilm", "input": {"text": "x"}}, "input"),
    _invalid("/models/minilm-rerank", {"inputs": {"query": "q"}}, "inputs"),
    _invalid("/models/minilm-rerank", {"inputs": {"query": "q", "texts": "a"}}, "inputs"),
    # empty and whitespace-only
    _invalid("/v1/embeddings", {"model": "minilm", "input": []}, "empty"),
    _invalid("/v1/embeddings", {"model": "minilm", "input": ["a", " \n"]}, "inputs[1] is empty"),
    _invalid("/models/gpt2", {"inputs": " \t\n"}, "inputs is empty"),
    _invalid("/models/t5-summarize", {"inputs": ""}, "inputs is empty"),
    _invalid("/models/ner", {"inputs": ["ok", "\u3000"]}, "inputs[1] is empty"),
    _invalid("/models/minilm-rerank", {"inputs": {"query": "q", "texts": []}}, "inputs.texts"),
    _invalid("/models/minilm-rerank", {"inputs": {"query": " ", "texts": ["a"]}},
             "inputs.query is empty"),
    _invalid("/models/minilm-summarize", {"inputs": "  "}, "inputs is empty"),
    _invalid("/models/zero-shot", {"inputs": "x", "parameters": {"candidate_labels": ""}},
             "candidate_labels"),
    # lone surrogates (JSON escapes, and their UTF-8-like bytes) and NUL characters
    _invalid("/models/minilm", b'{"inputs": "a\\ud800b"}', "inputs", "lone surrogate"),
    _invalid("/models/minilm", b'{"inputs": "a\xed\xa0\x80b"}', "inputs", "lone surrogate"),
    _invalid("/models/sentiment", b'{"inputs": ["ok", "\\udfff"]}', "inputs[1]",
             "lone surrogate"),
    _invalid("/models/sentiment", b'{"inputs": {"text": "a", "text_pair": "\\ud83d"}}',
             "inputs.text_pair", "lone surrogate"),
    _invalid("/models/qa", b'{"inputs": {"question": "q?", "context": "\\udc00"}}',
             "inputs.context", "lone surrogate"),
    _invalid("/models/minilm-rerank",
             b'{"inputs": {"query": "q", "texts": ["\\ud800"]}, "parameters": '
             b'{"return_text": true}}', "inputs.texts[0]", "lone surrogate"),
    _invalid("/models/zero-shot",
             b'{"inputs": "x", "parameters": {"candidate_labels": ["a", "\\ud800"]}}',
             "parameters.candidate_labels[1]", "lone surrogate"),
    _invalid("/models/fill-mask", b'{"inputs": "[MASK]", "parameters": {"targets": "\\ud800"}}',
             "parameters.targets", "lone surrogate"),
    _invalid("/models/sentiment", b'{"inputs": "x", "parameters": {"\\ud800": 1}}',
             "parameters: a key", "lone surrogate"),
    _invalid("/v1/embeddings", b'{"model": "minilm", "input": ["a", "\\ud800"]}', "input[1]",
             "lone surrogate"),
    _invalid("/models/minilm", {"inputs": "a\u0000b"}, "inputs", "NUL"),
    _invalid("/models/gpt2", {"inputs": "\u0000", "parameters": {"max_new_tokens": 1}}, "NUL"),
    _invalid("/models/t5-text2text", {"inputs": ["a", "b\u0000"]}, "inputs[1]", "NUL"),
    _invalid("/models/gpt2", {"inputs": "x", "parameters": {"stop": ["\u0000"]}},
             "parameters.stop[0]", "NUL"),
    _invalid("/v1/embeddings", {"model": "minilm", "input": "\u0000"}, "input", "NUL"),
    _invalid("/models/minilm", {"inputs": "\u0001\u0002\u001b"}, "inputs is empty"),
    _invalid("/models/qa", {"inputs": {"question": "\u0007", "context": "c"}},
             "inputs.question is empty"),
    # more inputs than the per-request limit (256 in the test app)
    _invalid("/models/sentiment", {"inputs": ["a"] * 257}, "limit of 256"),
    _invalid("/models/gpt2", {"inputs": ["a"] * 257}, "limit of 256"),
    _invalid("/models/qa", {"inputs": [{"question": "q", "context": "c"}] * 257},
             "limit of 256"),
    _invalid("/v1/embeddings", {"model": "minilm", "input": ["a"] * 257}, "limit of 256"),
    _invalid("/models/minilm", {"inputs": {"source_sentence": "a", "sentences": ["b"] * 256}},
             "limit of 256"),
    _invalid("/models/minilm-rerank", {"inputs": {"query": "a", "texts": ["b"] * 256}}, "256"),
    # routes and inputs that do not fit the model's task
    _invalid("/models/sentiment", {"inputs": "x", "stream": True}, "cannot stream"),
    _invalid("/models/minilm", {"inputs": "x", "parameters": {"stream": True}}, "cannot stream"),
    _invalid("/models/minilm", {"inputs": {"question": "q", "context": "c"}}, "inputs"),
    _invalid("/models/qa", {"inputs": "where?"}, "'question' and 'context'"),
    _invalid("/models/minilm-rerank", {"inputs": "x"}, "query"),
    _invalid("/models/sentiment", {"inputs": "x", "parameters": {"max_new_tokens": 5}},
             "parameters.max_new_tokens"),
    _invalid("/models/gpt2", {"inputs": "x", "parameters": {"candidate_labels": ["a"]}},
             "parameters.candidate_labels"),
    _invalid("/models/sentiment", {"inputs": "x", "normalize": True}, "normalize"),
    _invalid("/v1/embeddings", {"model": "minilm-rerank", "input": "x"}, "feature-extraction"),
    _invalid("/v1/embeddings", {"model": "gpt2", "input": "x"}, "feature-extraction"),
    _invalid("/v1/embeddings", {"model": "tiny-encoder", "input": "x"}, "sentence embedding"),
]


@pytest.mark.parametrize(("route", "payload", "headers", "mentions"), INPUTS)
def test_bad_inputs_are_422_naming_them(http, route, payload, headers, mentions):
    response = http.post(route, content=_raw(payload), headers=headers)
    _assert_error(response, 422, "validation", *mentions)


@pytest.mark.parametrize("name", ["sentiment", "minilm", "ner", "fill-mask", "zero-shot",
                                  "minilm-zero-shot", "t5-summarize", "marian-translate"])
def test_long_text_is_truncated_unless_the_client_disables_truncation(http, name):
    text = "[MASK] " + LONG if name == "fill-mask" else LONG
    parameters = {"max_new_tokens": 1} if name in GENERATORS else {}
    if "zero-shot" in name:
        parameters["candidate_labels"] = ["a", "b"]
    response = http.post(f"/models/{name}", json={"inputs": text, "parameters": parameters})
    assert response.status_code == 200, response.text
    response = http.post(f"/models/{name}", json={
        "inputs": text, "parameters": {**parameters, "truncation": False}})
    _assert_error(response, 422, "input_too_long", "tokens")


def test_prompt_longer_than_the_generators_window_is_422(http):
    response = http.post("/models/gpt2", json={"inputs": LONG, "parameters": {
        "max_new_tokens": 1}})
    _assert_error(response, 422, "input_too_long", "window")


# --- absurd parameters: 422 naming the parameter, before any model runs --------------------

NAN, INF = float("nan"), float("inf")
ABSURD = [
    ("sentiment", {"top_k": -1}, "top_k"),
    ("emotions", {"top_k": NAN}, "top_k"),
    ("fill-mask", {"top_k": 10**9}, "top_k"),
    ("fill-mask", {"targets": []}, "targets"),
    ("ner", {"aggregation_strategy": 10**9}, "aggregation_strategy"),
    ("zero-shot", {"candidate_labels": [f"l{i}" for i in range(1000)]}, "candidate_labels"),
    ("minilm-zero-shot", {"candidate_labels": ["a"], "multi_label": NAN}, "multi_label"),
    ("qa", {"top_k": 10**9}, "top_k"),
    ("qa", {"max_answer_len": 10**30}, "max_answer_len"),
    ("qa", {"max_seq_len": 10**9}, "max_seq_len"),
    ("qa", {"doc_stride": NAN}, "doc_stride"),
    ("minilm", {"dimensions": 10**9}, "dimensions"),
    ("minilm", {"dimensions": -3}, "dimensions"),
    ("minilm", {"normalize": INF}, "normalize"),
    ("minilm-rerank", {"top_n": 10**9}, "top_n"),
    ("minilm-summarize", {"max_sentences": 10**9}, "max_sentences"),
    ("minilm-summarize", {"max_sentences": -INF}, "max_sentences"),
    ("gpt2", {"max_new_tokens": 10**9}, "max_new_tokens"),
    ("gpt2", {"max_new_tokens": -5}, "max_new_tokens"),
    ("gpt2", {"max_new_tokens": NAN}, "max_new_tokens"),
    ("gpt2", {"top_k": 10**9, "do_sample": True}, "top_k"),
    ("gpt2", {"temperature": NAN, "do_sample": True}, "temperature"),
    ("gpt2", {"top_p": INF, "do_sample": True}, "top_p"),
    ("gpt2", {"repetition_penalty": -INF}, "repetition_penalty"),
    ("gpt2", {"temperature": 1e-300, "do_sample": True}, "temperature"),  # logits → inf
    ("t5-text2text", {"repetition_penalty": 5e-324, "do_sample": True}, "repetition_penalty"),
    ("gpt2", {"seed": -1}, "seed"),
    ("gpt2", {"seed": 10**30}, "seed"),
    ("gpt2", {"stop": ["x"] * 1000}, "stop"),
    ("t5-summarize", {"max_new_tokens": 10**9}, "max_new_tokens"),
    ("t5-text2text", {"num_beams": 1000}, "num_beams"),
    ("t5-translate", {"max_length": NAN}, "max_length"),
    ("marian-translate", {"min_length": 10**9}, "min_length"),
    ("bart-summarize", {"top_k": 10**9, "do_sample": True}, "top_k"),
    ("bart-text2text", {"generate_parameters": {"max_new_tokens": 10**9}}, "max_new_tokens"),
    ("marian-text2text", {"num_beams": -1}, "num_beams"),
]


@pytest.mark.parametrize(("name", "parameters", "parameter"), ABSURD,
                         ids=[f"{n} {p}" for n, _, p in ABSURD])
def test_absurd_parameters_are_422_naming_the_parameter(http, name, parameters, parameter):
    inputs = {"qa": {"question": "where?", "context": "in paris"}}.get(
        name, "[MASK] here" if name == "fill-mask" else "hello there")
    if "zero-shot" in name:
        parameters = {"candidate_labels": ["a"], **parameters}
    body = json.dumps({"inputs": inputs, "parameters": parameters}).encode()
    start = time.monotonic()
    response = http.post(f"/models/{name}", content=body, headers=JSON)
    _assert_error(response, 422, "validation", parameter)
    assert "parameters" in response.json()["error"]
    assert time.monotonic() - start < 30  # refused up front, not after generating


# --- models and routes that do not exist ------------------------------------------------------

@pytest.mark.parametrize(("method", "route", "status", "error_type"), [
    ("POST", "/models/no-such-model", 404, "not_found"),
    ("POST", "/models/%ED%A0%80", 404, "not_found"),  # a surrogate's bytes, percent-encoded
    ("POST", "/models/", 404, "not_found"),
    ("POST", "/pipeline/text-classification/sentiment", 404, "not_found"),
    ("GET", "/models/minilm", 405, "method_not_allowed"),
    ("DELETE", "/v1/embeddings", 405, "method_not_allowed"),
    ("GET", "/rerank", 405, "method_not_allowed"),
])
def test_unknown_models_and_routes_are_json_errors(http, method, route, status, error_type):
    response = http.request(method, route, content=b'{"inputs": "x"}', headers=JSON)
    _assert_error(response, status, error_type)


# --- the body limit ---------------------------------------------------------------------------

def test_body_declared_over_the_limit_is_refused_before_it_is_sent(served_app):
    """A Content-Length over the limit gets its 413 while the body has not been sent: the
    server does not wait to read it."""
    url = urlsplit(served_app)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(b"POST /models/minilm HTTP/1.1\r\nHost: test\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
                     b'{"inputs": "')
        answer = b""
        while b"payload_too_large" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_openai_body_over_the_limit_is_413(http):
    response = http.post("/v1/embeddings", json={"model": "minilm", "input": "x" * 70_000})
    _assert_error(response, 413, "payload_too_large", "limit")


# --- what is accepted ------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "payload"), [
    ("minilm", {"inputs": "tab\tnew line\ncarriage\rbell\u0007 text"}),
    ("sentiment", {"inputs": ["caf\u00e9 \U0001f600", "\ufeffbyte order mark"]}),
    ("gpt2", {"inputs": "\u6771\u4eac \u0001", "parameters": {"max_new_tokens": 1}}),
    ("minilm", {"inputs": "x", "options": {"use_cache": False, "wait_for_model": True}}),
])
def test_unusual_but_valid_text_is_served(http, name, payload):
    response = http.post(f"/models/{name}", json=payload)
    assert response.status_code == 200, response.text


def test_server_is_healthy_after_bad_input(http):
    response = http.get("/health")
    assert response.status_code == 200, response.text
    assert set(response.json()["models"].values()) == {"ok"}
