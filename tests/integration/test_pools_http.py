"""Model pools over HTTP: the session app's ``customers`` pool (20 tiny classifiers in a
directory, at most 4 per replica, ``m00`` preloaded, engine onnx) and ``embedders`` pool (two listed
embedders, one per replica). Every member answers as ``transformers.pipeline`` on that
member does, through unloads and reloads; names outside the pool load nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import yaml
from conftest import ADAPTERS, APP_NAME, POOL_MEMBERS
from test_readme import BLOCK, DOCS, POOLS_PAGE, curl_examples
from transformers import pipeline

from serving.config import AppConfig

TEXTS = ["I love this movie!", "the food was terrible", "hello world"]
MEMBERS = [f"m{index:02d}" for index in range(POOL_MEMBERS)]


@pytest.fixture(scope="module")
def references(pool_dir) -> dict[str, list]:
    """member → ``pipeline(...)(TEXTS, top_k=None)`` of its directory."""
    return {member: pipeline("text-classification", model=str(pool_dir / member))(
        TEXTS, top_k=None) for member in MEMBERS}


def _assert_same(answer: list, expected: list, atol: float = 1e-6) -> None:
    assert len(answer) == len(expected)
    for got, want in zip(answer, expected, strict=True):
        assert [entry["label"] for entry in got] == [entry["label"] for entry in want]
        assert np.allclose([entry["score"] for entry in got],
                           [entry["score"] for entry in want], atol=atol)


def _classify_concurrently(http, names: list[str]) -> list[tuple[str, list]]:
    """``(name, answer)`` of TEXTS with every label, for each name, 8 requests at a time."""
    def ask(name: str) -> tuple[str, list]:
        response = http.post(f"/models/{name}",
                             json={"inputs": TEXTS, "parameters": {"top_k": None}})
        assert response.status_code == 200, response.text
        return name, response.json()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(ask, names))


def _loaded(http) -> dict[str, list[str]]:
    cards = http.get("/v1/models").json()["data"]
    return {card["id"]: card["loaded_on"] for card in cards if card.get("loaded_on")}


def test_every_member_answers_like_its_pipeline_through_unloads(http, references):
    """20 members on a replica that holds 4: each round loads every member again, while
    requests for many members run at once."""
    jobs = [f"customers/{member}" for _ in range(2) for member in MEMBERS]
    for name, answer in _classify_concurrently(http, jobs):
        _assert_same(answer, references[name.removeprefix("customers/")])
    loaded = [name for name in _loaded(http) if name.startswith("customers/")]
    assert 1 <= len(loaded) <= 4, loaded


def test_members_switch_to_onnx_runtime_once_exported(http, references):
    """engine onnx: a member answers at once in PyTorch, is exported in the background, then
    runs on ONNX Runtime; its answers stay its pipeline's throughout."""
    from ray import serve

    pool = serve.get_deployment_handle("customers-pool", app_name=APP_NAME)
    members = MEMBERS[-3:]
    deadline = time.monotonic() + 120
    while True:
        for name, answer in _classify_concurrently(http, [f"customers/{m}" for m in members]):
            _assert_same(answer, references[name.removeprefix("customers/")])
        engines = pool.members.remote().result()["engines"]
        if all(engines.get(member) == "onnx" for member in members):
            break
        assert time.monotonic() < deadline, f"still not on ONNX Runtime: {engines}"
        time.sleep(0.5)
    for name, answer in _classify_concurrently(http, [f"customers/{m}" for m in members]):
        _assert_same(answer, references[name.removeprefix("customers/")])


def test_a_member_is_served_on_the_tei_and_default_routes(http, references):
    predict = http.post("/models/customers/m07/predict", json={"inputs": TEXTS[0]})
    assert predict.status_code == 200, predict.text
    _assert_same([predict.json()], [references["m07"][0]])
    info = http.get("/models/customers/m07/info")
    assert info.status_code == 200, info.text
    assert info.json()["model_id"] == "m07" and info.json()["name"] == "customers/m07"
    default = http.post("/models/customers/m07", json={"inputs": TEXTS[0]})
    assert default.status_code == 200, default.text
    _assert_same(default.json(), [references["m07"][0]])


@pytest.mark.parametrize("name", [
    "customers/escape",  # a symlink to a model outside the pool
    "customers/pickled",  # no safetensors weights
    "customers/README.md",  # a file
    "customers/nope",
    "customers/..%2F..%2Fsentiment",  # an encoded `..`
    "customers/m01%2F..%2F..%2Fescape",
    "customers/.hidden",
])
def test_names_outside_the_pool_are_404_and_unload_nothing(http, name):
    assert http.post("/models/customers/m03", json={"inputs": "x"}).status_code == 200
    before = _loaded(http).get("customers/m03")
    response = http.post(f"/models/{name}", json={"inputs": "x"})
    assert response.status_code == 404, response.text
    assert response.json()["error_type"] == "not_found"
    assert _loaded(http).get("customers/m03") == before  # still held: nothing was loaded


def test_the_pool_itself_is_not_a_model(http):
    response = http.post("/models/customers", json={"inputs": "x"})
    assert response.status_code == 404
    assert "customers/<member>" in response.json()["error"]


def test_models_lists_the_pools_and_their_members(http):
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert cards["customers"]["members"] == POOL_MEMBERS
    assert {f"customers/{member}" for member in MEMBERS} <= set(cards)
    assert not {"customers/escape", "customers/pickled", "customers/README.md"} & set(cards)
    assert cards["embedders/tiny-bert-st"]["task"] == "feature-extraction"
    assert "members" not in cards["sentiment"] and "loaded_on" not in cards["sentiment"]


def test_listed_members_answer_like_the_same_models_served_alone(http):
    """The ``embedders`` pool holds one member per replica: each request reloads."""
    for _ in range(2):
        pooled = http.post("/v1/embeddings", json={"model": "embedders/tiny-bert-st",
                                                   "input": TEXTS})
        assert pooled.status_code == 200, pooled.text
        alone = http.post("/v1/embeddings", json={"model": "tiny-st", "input": TEXTS})
        assert np.allclose([d["embedding"] for d in pooled.json()["data"]],
                           [d["embedding"] for d in alone.json()["data"]], atol=1e-6)
        pooled = http.post("/models/embedders/tiny-bert", json={"inputs": TEXTS[0]})
        assert pooled.status_code == 200, pooled.text
        alone = http.post("/models/tiny-encoder", json={"inputs": TEXTS[0]})
        assert np.allclose(pooled.json(), alone.json(), atol=1e-6)


def test_token_embeddings_on_the_openai_route_are_a_clear_4xx(http):
    """Texts of different lengths give token embeddings of different shapes (a 500 once)."""
    response = http.post("/v1/embeddings", json={"model": "embedders/tiny-bert",
                                                 "input": TEXTS})
    assert 400 <= response.status_code < 500, response.text
    assert "token embeddings" in response.json()["error"]["message"]


def test_health_covers_the_pools(http):
    report = http.get("/health").json()["models"]
    assert report["customers"] == "ok" and report["embedders"] == "ok"


@pytest.mark.parametrize("command,expected", curl_examples(DOCS[POOLS_PAGE]))
def test_the_pools_page_examples(http, command, expected):
    """docs/pools.md's curl examples, sent to the test app's pools."""
    words = command.split()
    url = next(word for word in words if word.startswith("http://127.0.0.1:8000/"))
    path = url.removeprefix("http://127.0.0.1:8000")
    if "-d" in command:
        body = command.split("-d '", 1)[1].rsplit("'", 1)[0]
        response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = http.get(path)
    assert response.status_code == 200, response.text
    if expected is not None:
        assert response.json() == expected


def test_the_pools_page_configs_are_valid(pool_dir, adapter_dirs):
    paths = {"/srv/models/customers": pool_dir, "/srv/models/base-classifier": adapter_dirs[0],
             "/srv/adapters": adapter_dirs[1]}
    specs = []
    for lang, block in BLOCK.findall(DOCS[POOLS_PAGE]):
        if lang == "yaml":
            for placeholder, path in paths.items():
                block = block.replace(placeholder, str(path))
            specs += AppConfig.model_validate(yaml.safe_load(block)).models
    assert [(spec.is_pool, spec.adapters) for spec in specs] == [(True, False), (True, True)]


def test_each_adapter_answers_as_its_merged_model_in_mixed_batches(http, adapter_dirs):
    """The ``tenants`` pool: LoRA adapters a0..a3 of one base on a replica that holds 2;
    concurrent requests for every adapter share the base's passes."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base, root = adapter_dirs
    tokenizer = AutoTokenizer.from_pretrained(base)
    expected = {}
    for index in range(ADAPTERS):
        merged = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(
            base), root / f"a{index}").merge_and_unload().eval()
        expected[f"a{index}"] = pipeline("text-classification", model=merged,
                                         tokenizer=tokenizer)(TEXTS, top_k=None)
    assert expected["a0"] != expected["a1"]  # the adapters differ

    jobs = [f"tenants/a{i % ADAPTERS}" for i in range(24)]
    for name, answer in _classify_concurrently(http, jobs):
        _assert_same(answer, expected[name.removeprefix("tenants/")], atol=1e-5)
    assert http.post("/models/tenants/base", json={"inputs": "x"}).status_code == 404
