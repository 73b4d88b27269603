"""The "An example per task" section of the docs (docs/api/inference-api.md), checked
against the session's tiny models.

Those examples target the Hub profile (configs/hub.yaml), which tests cannot download. Each
example's request is sent to the session app's model of the same task, and the answer must
have the shape the docs show: same containers and nesting, same keys, same leaf types,
and the same list lengths wherever the request fixes them (inputs, ``top_k``, candidate
labels, sentences). The docs' own numbers are checked for consistency (offsets index the
text, labels come from the request or the model's label set) without a server.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from test_readme import ROOT, curl_examples, split_docs

from serving.tasks import canonical_task

SECTION = split_docs()[0]
EXAMPLES = curl_examples(SECTION)
HUB = {model["name"]: canonical_task(model["task"]) for model in yaml.safe_load(
    (ROOT / "configs" / "hub.yaml").read_text())["applications"][0]["args"]["models"]}
# Hub profile model → the session test app's model of the same task (tests/conftest.py).
TEST_MODEL = {
    "sentiment": "sentiment", "emotions": "emotions", "ner": "ner", "qa": "qa",
    "zero-shot": "zero-shot", "summarize": "bart-summarize",
    "translate-en-de": "marian-translate", "flan-t5": "t5-text2text", "gpt2": "gpt2",
    "fill-mask": "fill-mask", "minilm": "minilm", "mpnet": "minilm",
}
README_MASK = "<mask>"  # DistilRoBERTa's; the tiny BERT's is [MASK]


def parse_curl(command: str) -> tuple[str, dict]:
    """``(model name, JSON body)`` of a ``curl ... /models/NAME ... -d '{...}'`` example."""
    words = shlex.split(command)
    url = next(word for word in words if word.startswith("http"))
    match = re.fullmatch(r"http://127\.0\.0\.1:8000/models/([\w.-]+)", url)
    assert match, f"not a POST /models/NAME example: {command}"
    assert "-d" in words, f"no -d body: {command}"
    return match.group(1), json.loads(words[words.index("-d") + 1])


def example_id(example: tuple[str, object]) -> str:
    return parse_curl(example[0])[0]


def leaf_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, str)) or value is None:
        return type(value).__name__
    raise AssertionError(f"not a leaf: {value!r}")


def same_shape(expected: object, actual: object, path: str = "answer",
               free_length: frozenset[str] = frozenset()) -> None:
    """Assert ``actual`` is shaped like ``expected``: same containers, keys and leaf types,
    same list lengths except at the paths in ``free_length`` (there each item of ``actual``
    is compared with the first item of ``expected``, when both have items)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: the docs show an object, got {actual!r}"
        assert list(actual) == list(expected), (
            f"{path}: keys differ: docs {list(expected)}, server {list(actual)}")
        for key in expected:
            same_shape(expected[key], actual[key], f"{path}.{key}", free_length)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: the docs show a list, got {actual!r}"
        if path in free_length:
            if expected:
                for i, item in enumerate(actual):
                    same_shape(expected[0], item, f"{path}[{i}]", free_length)
            return
        assert len(actual) == len(expected), (
            f"{path}: the docs show {len(expected)} items, server answered {len(actual)}")
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            same_shape(want, got, f"{path}[{i}]", free_length)
    else:
        assert leaf_type(actual) == leaf_type(expected), (
            f"{path}: the docs show a {leaf_type(expected)} ({expected!r}), "
            f"server answered a {leaf_type(actual)} ({actual!r})")


def test_section_covers_every_task_of_the_hub_profile():
    assert EXAMPLES, "no curl examples under the 'An example per task' heading"
    shown = [parse_curl(command)[0] for command, _ in EXAMPLES]
    assert all(name in HUB for name in shown), f"not models of configs/hub.yaml: {shown}"
    assert {HUB[name] for name in shown} == set(HUB.values())
    assert all(expected is not None for _, expected in EXAMPLES), "an example has no answer"


def test_same_shape_catches_differences():
    same_shape([{"a": 1, "b": "x"}], [{"a": 2, "b": "y"}])
    for expected, actual in [([{"a": 1}], [{"b": 1}]), ([1.0], [1]), ([1.0], [1.0, 2.0]),
                             ({"a": [1]}, {"a": 1}), ([[1.0]], [1.0])]:
        with pytest.raises(AssertionError):
            same_shape(expected, actual)


@pytest.mark.parametrize("command,expected", EXAMPLES, ids=[example_id(e) for e in EXAMPLES])
def test_readme_answer_is_consistent(command, expected):
    """The docs' answer agrees with its own request (no server needed)."""
    name, body = parse_curl(command)
    inputs, parameters = body["inputs"], body.get("parameters", {})
    task = HUB[name]
    if task == "text-classification":
        texts = inputs if isinstance(inputs, list) else [inputs]
        assert len(expected) == len(texts)
        for ranked in expected:
            assert len(ranked) == parameters.get("top_k", 2)
            assert {entry["label"] for entry in ranked} <= {"POSITIVE", "NEGATIVE"}
    elif task == "token-classification":
        for entity in expected:
            assert entity["entity_group"] in {"PER", "ORG", "LOC", "MISC"}, entity
            assert inputs[entity["start"]:entity["end"]] == entity["word"], entity
    elif task == "question-answering":
        context = inputs["context"]
        assert context[expected["start"]:expected["end"]] == expected["answer"]
    elif task == "zero-shot-classification":
        assert expected["sequence"] == inputs
        assert sorted(expected["labels"]) == sorted(parameters["candidate_labels"])
        assert expected["scores"] == sorted(expected["scores"], reverse=True)
        assert abs(sum(expected["scores"]) - 1) < 1e-4
    elif task == "fill-mask":
        assert len(expected) == parameters.get("top_k", 5)
        for prediction in expected:
            token = prediction["token_str"]
            mask = f" {README_MASK}" if token.startswith(" ") else README_MASK
            assert prediction["sequence"] == inputs.replace(mask, token), prediction
    elif task == "text-generation":
        assert expected[0]["generated_text"].startswith(inputs)
    elif task == "feature-extraction":
        assert len(expected) == len(inputs["sentences"])


@pytest.mark.parametrize("command,expected", EXAMPLES, ids=[example_id(e) for e in EXAMPLES])
def test_example_answer_has_the_docs_shape(http, app_config, command, expected):
    name, body = parse_curl(command)
    test_name = TEST_MODEL[name]
    (served,) = [m for m in app_config["models"] if m["name"] == test_name]
    assert canonical_task(served["task"]) == HUB[name], (name, test_name)
    if HUB[name] == "fill-mask":
        from transformers import AutoTokenizer

        mask = AutoTokenizer.from_pretrained(Path(served["model"])).mask_token
        body = json.loads(json.dumps(body).replace(README_MASK, mask))
    response = http.post(f"/models/{test_name}", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    # Entities of random tiny models are not the docs': only their keys must match.
    free = frozenset({"answer"}) if HUB[name] == "token-classification" else frozenset()
    same_shape(expected, answer, free_length=free)
    if HUB[name] == "zero-shot-classification":
        assert sorted(answer["labels"]) == sorted(body["parameters"]["candidate_labels"])
        assert answer["sequence"] == body["inputs"]
