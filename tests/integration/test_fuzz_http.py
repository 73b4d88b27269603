"""Property-based fuzzing of every route (issue 6): random JSON bodies shaped like the
Inference API, random values in every field (NaN and Infinity written raw, huge and negative
numbers, lone surrogates, NUL), and raw bytes (truncated JSON, invalid UTF-8). Whatever is
sent: no 5xx, every error is a JSON ``{"error", "error_type"}`` body (with TEI's error
types on TEI's routes; OpenAI's ``{"error": {"message", "type", "param", "code"}}`` on
OpenAI's), and ``/health`` is still 200 afterwards.

Routes come from the app's OpenAPI schema, so routes added later are fuzzed too. Generating
models always get a tiny or an absurd ``max_new_tokens`` (refused before generating), which
keeps the run short. Reproducible: examples are derandomized (the same every run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from serving.errors import TEI_ERROR_TYPES, speaks_openai, speaks_tei

GENERATING_TASKS = {"text-generation", "summarization", "translation", "text2text-generation"}
FUZZ = settings(
    deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
NAN, INF = float("nan"), float("inf")

# --- values --------------------------------------------------------------------------------

EXTREME_NUMBERS = st.sampled_from([
    0, 1, -1, 2, 10**9, -(10**9), 2**31, 2**63, 2**64, 10**30, -(10**30), 0.5, -0.0, 1e308,
    -1e308, 1e-300, 5e-324, NAN, INF, -INF,
])
ODD_TEXTS = st.sampled_from([
    "", " ", "\t\n ", "\u3000", "hello", "[MASK]", "<mask>", "hi [MASK] <mask>", "\x00",
    "a\x00b", "\ud800", "a\udfffb", "\x01\x02", "\x7f", "{}", "{0}", "This example is {}.",
    "caf\u00e9 \U0001f600", "\ufeff", "left", "right", "softmax", "simple", "en", "de",
])
TEXTS = st.one_of(ODD_TEXTS, st.text(max_size=20))
SCALARS = st.one_of(st.none(), st.booleans(), EXTREME_NUMBERS, st.integers(-3, 20),
                    st.floats(), TEXTS)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(TEXTS, children, max_size=4)),
    max_leaves=10,
)

PARAMETER_NAMES = [
    "top_k", "top_n", "function_to_apply", "truncation", "truncate", "normalize", "dimensions",
    "candidate_labels", "hypothesis_template", "multi_label", "targets", "aggregation_strategy",
    "ignore_labels", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
    "handle_impossible_answer", "align_to_words", "max_new_tokens", "max_length", "min_length",
    "num_beams", "do_sample", "temperature", "top_p", "repetition_penalty", "seed", "stop",
    "return_full_text", "stream", "src_lang", "tgt_lang", "clean_up_tokenization_spaces",
    "generate_parameters", "max_sentences", "return_text", "details", "watermark",
]
PARAMETER_VALUES = st.one_of(SCALARS, st.lists(TEXTS, max_size=4), JSON_VALUES)
PARAMETERS = st.dictionaries(st.one_of(st.sampled_from(PARAMETER_NAMES), TEXTS),
                             PARAMETER_VALUES, max_size=4)
# Lengths of generation: tiny, or absurd (those must be refused before generating).
NEW_TOKENS = st.one_of(st.integers(1, 2), st.sampled_from([0, -1, 2049, 10**9, NAN, INF, "2"]))

# Plausible requests, so that examples also get past validation and run the models.
PLAIN = st.sampled_from(["hello", "The movie was great.", "Paris is in France.",
                         "hello [MASK] world", "<mask> is nice", "what is it?", "sports", "a"])
PLAUSIBLE_VALUES = st.one_of(st.integers(1, 4), st.booleans(), st.floats(0.1, 1.0), PLAIN,
                             st.lists(PLAIN, min_size=1, max_size=3))
PLAUSIBLE_PARAMETERS = st.dictionaries(st.sampled_from(PARAMETER_NAMES), PLAUSIBLE_VALUES,
                                       max_size=2)
PLAUSIBLE_INPUTS = st.one_of(
    PLAIN,
    st.lists(PLAIN, min_size=1, max_size=3),
    st.fixed_dictionaries({"text": PLAIN, "text_pair": PLAIN}),
    st.fixed_dictionaries({"question": PLAIN, "context": PLAIN}),
    st.fixed_dictionaries({"source_sentence": PLAIN,
                           "sentences": st.lists(PLAIN, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"query": PLAIN, "texts": st.lists(PLAIN, min_size=1, max_size=3)}),
)

PAIR = st.fixed_dictionaries({"text": TEXTS, "text_pair": TEXTS})
QUESTION = st.fixed_dictionaries({"question": TEXTS, "context": TEXTS})
INPUTS = st.one_of(
    TEXTS,
    st.lists(TEXTS, max_size=4),
    PAIR,
    QUESTION,
    st.fixed_dictionaries({"source_sentence": TEXTS, "sentences": st.lists(TEXTS, max_size=4)}),
    st.fixed_dictionaries({"query": TEXTS, "texts": st.lists(TEXTS, max_size=4)}),
    st.lists(st.one_of(PAIR, QUESTION, TEXTS), max_size=3),
    JSON_VALUES,
)
TOP_LEVEL = st.dictionaries(
    st.sampled_from(["options", "stream", "normalize", "truncate", "truncation_direction",
                     "dimensions", "prompt_name", "encoding_format", "surprise"]),
    PARAMETER_VALUES, max_size=2,
)
# Bodies of the other POST routes (OpenAI, TEI): their fields, with random values.
ROUTE_FIELDS = ["inputs", "input", "model", "query", "texts", "normalize", "truncate",
                "truncation_direction", "dimensions", "encoding_format", "raw_scores",
                "return_text", "add_special_tokens", "parameters", "prompt_name", "user"]


def _encode(payload, ascii_only: bool) -> bytes:
    """JSON bytes, NaN/Infinity written raw; without ``ascii_only`` lone surrogates become
    their (invalid) UTF-8-like bytes."""
    return json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def inference_bodies(draw, generating: bool, zero_shot: bool = False) -> bytes:
    """A ``POST /models/{name}`` body: the Inference API's shape with random contents."""
    payload: dict = {}
    plausible = draw(st.booleans())
    if plausible:  # mostly reaches the model
        payload["inputs"] = draw(PLAUSIBLE_INPUTS)
        parameters = draw(st.one_of(st.just({}), st.just({}), PLAUSIBLE_PARAMETERS))
        if zero_shot:
            parameters.setdefault("candidate_labels", ["sports", "politics"])
    else:
        if draw(st.integers(0, 9)):  # mostly with inputs
            payload["inputs"] = draw(INPUTS)
        parameters = draw(st.one_of(st.just({}), PARAMETERS, JSON_VALUES))
    if generating:  # keep generation short: a tiny length, or one that must be refused
        parameters = parameters if isinstance(parameters, dict) else {}
        parameters = {**parameters, "max_new_tokens": draw(NEW_TOKENS)}
        parameters.pop("generate_parameters", None)
    if parameters != {} or draw(st.booleans()):
        payload["parameters"] = parameters
    if not plausible:
        payload.update(draw(TOP_LEVEL))
    return _encode(payload, draw(st.booleans()))


@st.composite
def route_bodies(draw, names: list[str]) -> bytes:
    fields = draw(st.lists(st.sampled_from(ROUTE_FIELDS), max_size=5, unique=True))
    payload = {}
    for field in fields:
        if field == "model":
            payload[field] = draw(st.one_of(st.sampled_from(names), SCALARS))
        elif field in ("inputs", "input", "texts"):
            payload[field] = draw(INPUTS)
        else:
            payload[field] = draw(PARAMETER_VALUES)
    return _encode(payload, draw(st.booleans()))


@st.composite
def broken_bodies(draw, valid: st.SearchStrategy[bytes]) -> bytes:
    """Raw bytes: random, a valid body cut short, or one with a byte made invalid UTF-8."""
    kind = draw(st.sampled_from(["random", "truncated", "bad byte"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    body = draw(valid)
    cut = draw(st.integers(0, max(len(body) - 1, 0)))
    if kind == "truncated":
        return body[:cut]
    return body[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + (
        body[cut + 1:])


# --- the served routes -----------------------------------------------------------------------

# Routes fuzzed even if the OpenAPI schema leaves them out.
KNOWN_ROUTES = [("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("GET", "/health")]


@dataclass(frozen=True)
class Routes:
    names: list[str]  # every served name, views included
    tasks: dict[str, str]  # name → task
    generating: set[str]  # names whose model generates (slow)


@pytest.fixture(scope="module")
def routes(http) -> Routes:
    cards = http.get("/v1/models").json()["data"]
    tasks = {card["id"]: card["task"] for card in cards}
    generating = {card["id"] for card in cards
                  if tasks.get(card.get("pipeline", card["id"]), card["task"]) in GENERATING_TASKS}
    return Routes([card["id"] for card in cards], tasks, generating)


def _documented_routes(http) -> list[tuple[str, str]]:
    """``(method, path)`` of every route in the OpenAPI schema but ``/models/{name}``."""
    response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    found = [(method.upper(), path) for path, methods in response.json()["paths"].items()
             for method in methods if path != "/models/{name}"]
    return sorted(set(found) | set(KNOWN_ROUTES))


def _check(response, request: str) -> None:
    assert response.status_code < 500, f"{request} -> {response.status_code} {response.text}"
    if response.status_code >= 400:
        body = response.json()
        if speaks_openai(response.request.url.path):  # OpenAI's error shape
            assert set(body) == {"error"}, f"{request} -> {response.text}"
            assert set(body["error"]) == {"message", "type", "param", "code"}, response.text
            message = body["error"]["message"]
        else:
            assert set(body) == {"error", "error_type"}, f"{request} -> {response.text}"
            if speaks_tei(response.request.url.path):  # TEI's six error types
                assert body["error_type"] in TEI_ERROR_TYPES, f"{request} -> {response.text}"
            message = body["error"]
        assert isinstance(message, str) and message, f"{request} -> {response.text}"
    elif response.headers.get("content-type", "").startswith("application/json"):
        response.json()
    else:
        assert response.headers.get("content-type", "").startswith("text/event-stream"), (
            f"{request} -> {response.headers}")


def _post(http, path: str, body: bytes, method: str = "POST") -> None:
    response = http.request(method, path, content=body,
                            headers={"content-type": "application/json"})
    _check(response, f"{method} {path} {body[:300]!r}")


def _assert_healthy(http) -> None:
    response = http.get("/health")
    assert response.status_code == 200, response.text
    assert set(response.json()["models"].values()) == {"ok"}, response.text


# --- the properties ---------------------------------------------------------------------------

ABSURD_GENERATION = [
    {"max_new_tokens": 10**9}, {"max_new_tokens": NAN}, {"num_beams": 1000, "max_new_tokens": 2},
    {"top_k": 10**9, "do_sample": True}, {"temperature": -INF, "do_sample": True},
    {"min_length": 10**9}, {"seed": -1},
]


def test_fuzz_inference_api(http, routes):
    """``POST /models/{name}`` for every served name, generating models included."""
    def bodies(name: str):
        return st.tuples(st.just(name), inference_bodies(name in routes.generating,
                                                         "zero-shot" in routes.tasks[name]))

    @settings(FUZZ, max_examples=400)
    @given(st.sampled_from(routes.names).flatmap(bodies))
    def fuzz(request):
        name, body = request
        _post(http, f"/models/{name}", body)

    for name in sorted(routes.generating):  # absurd settings: refused before generating
        for parameters in ABSURD_GENERATION:
            fuzz = example((name, _encode({"inputs": "hi", "parameters": parameters},
                                          True)))(fuzz)
    fuzz()
    _assert_healthy(http)


def test_fuzz_other_routes(http, routes):
    """Every other route (``/v1/embeddings``, ``/v1/models``, ``/health``, and the TEI
    routes with each served name), with bodies built from their fields."""
    names = routes.names
    fast = [name for name in names if name not in routes.generating]
    documented = _documented_routes(http)

    def requests(route):
        method, path = route
        if "{name}" in path:  # generating models only with absurd lengths: keep it short
            path_names = st.sampled_from(fast)
            return st.tuples(st.just(method), path_names.map(
                lambda n: path.replace("{name}", n)), route_bodies(names))
        return st.tuples(st.just(method), st.just(path), route_bodies(names))

    @settings(FUZZ, max_examples=200)
    @given(st.sampled_from(documented).flatmap(requests))
    def fuzz(request):
        method, path, body = request
        _post(http, path, body, method)

    fuzz()
    _assert_healthy(http)


def test_fuzz_raw_bodies(http, routes):
    """Bytes that are not JSON, or not UTF-8, at ``/models/{name}`` and ``/v1/embeddings``."""
    paths = [f"/models/{name}" for name in routes.names] + ["/v1/embeddings"]

    @settings(FUZZ, max_examples=150)
    @given(st.sampled_from(paths),
           broken_bodies(inference_bodies(generating=True) | route_bodies(routes.names)))
    def fuzz(path, body):
        _post(http, path, body)

    fuzz()
    _assert_healthy(http)
