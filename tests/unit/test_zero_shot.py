"""zero-shot-classification without Ray: parameters, input expansion, and parity with
``transformers.pipeline("zero-shot-classification")`` through ModelRunner + TextTokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import pipeline

from serving.config import ModelSpec
from serving.errors import InputTooLongError, InvalidInputError
from serving.runner import ModelRunner
from serving.tasks import task_class
from serving.tasks.zero_shot import ZeroShotClassification, ZeroShotClassificationParameters
from serving.tokenization import TextTokenizer

SCORE_ATOL = 1e-4
LABELS = ["politics", "sports", "music", "food"]
TEXTS = ["A man is eating food.", "the movie was great", "Paris is the capital of France",
         "hello"]
LONG_TEXT = "the movie was really great and i love it, ray serve batches it all. " * 30
UNICODE = ["Café crème brûlée, très délicieux!", "東京は日本の首都です", "I love pizza 🍕🎉",
           "naïve Zoë visits Düsseldorf"]


def _params(**values) -> ZeroShotClassificationParameters:
    return ZeroShotClassificationParameters.model_validate(values)


# --- parameters --------------------------------------------------------------------------


def test_registered():
    assert task_class("zero-shot-classification") is ZeroShotClassification
    assert ZeroShotClassification.model_class == "AutoModelForSequenceClassification"


def test_defaults():
    params = _params(candidate_labels=["a", "b"])
    assert params.candidate_labels == ["a", "b"]
    assert params.hypothesis_template == "This example is {}."
    assert params.multi_label is False
    assert params.truncation == "only_first"  # the pipeline's strategy
    assert _params(candidate_labels="a", truncate=False).truncation is False
    assert _params(candidate_labels="a", truncation="true").truncation == "only_first"


@pytest.mark.parametrize("labels,expected", [
    ("politics, sports ,music", ["politics", "sports", "music"]),
    ("one", ["one"]),
    ("a,,b, ,", ["a", "b"]),
    (["a b", "c"], ["a b", "c"]),
])
def test_comma_separated_labels_split_like_the_pipeline(labels, expected):
    assert _params(candidate_labels=labels).candidate_labels == expected


@pytest.mark.parametrize("values,mentions", [
    ({}, "candidate_labels"),
    ({"candidate_labels": []}, "candidate_labels"),
    ({"candidate_labels": ""}, "candidate_labels"),
    ({"candidate_labels": " , "}, "candidate_labels"),
    ({"candidate_labels": ["ok", "  "]}, "candidate_labels[1] is blank"),
    ({"candidate_labels": ["ok", 3]}, "candidate_labels"),
    ({"candidate_labels": [f"l{i}" for i in range(65)]}, "candidate_labels"),
    ({"candidate_labels": ["a"], "hypothesis_template": "no slot"}, "hypothesis_template"),
    ({"candidate_labels": ["a"], "hypothesis_template": "{} and {}"}, "hypothesis_template"),
    ({"candidate_labels": ["a"], "hypothesis_template": "{x} {}"}, "hypothesis_template"),
    ({"candidate_labels": ["a"], "multi_label": "maybe"}, "multi_label"),
    ({"candidate_labels": ["a"], "top_k": 1}, "top_k"),
])
def test_bad_parameters(values, mentions):
    with pytest.raises(ValidationError) as info:
        ZeroShotClassificationParameters.model_validate(values)
    assert mentions in str(info.value)


def test_sixty_four_labels_allowed():
    assert len(_params(candidate_labels=[f"l{i}" for i in range(64)]).candidate_labels) == 64


# --- inputs ------------------------------------------------------------------------------


def test_parse_inputs_expands_one_pair_per_label():
    params = _params(candidate_labels=["x", "y"], hypothesis_template="About {}!")
    parsed = ZeroShotClassification.parse_inputs(["first", "second"], 8, params)
    assert parsed.texts == ["first", "first", "second", "second"]
    assert parsed.text_pairs == ["About x!", "About y!", "About x!", "About y!"]
    assert (parsed.single, parsed.layout) == (False, "zero-shot")
    single = ZeroShotClassification.parse_inputs("only", 8, params)
    assert (single.texts, single.text_pairs, single.single) == (
        ["only", "only"], ["About x!", "About y!"], True)


def test_pair_limit():
    params = _params(candidate_labels=["a", "b", "c"])
    assert len(ZeroShotClassification.parse_inputs(["1", "2"], 6, params).texts) == 6
    too_many = r"9 premise/hypothesis pairs \(3 × 3\).*limit of 8"
    with pytest.raises(InvalidInputError, match=too_many):
        ZeroShotClassification.parse_inputs(["1", "2", "3"], 8, params)
    with pytest.raises(InvalidInputError, match="limit of 2"):
        ZeroShotClassification.parse_inputs("one", 2, params)


@pytest.mark.parametrize("inputs,mentions", [
    ({"text": "a", "text_pair": "b"}, "inputs must be a string, got dict"),
    (["ok", " "], "inputs[1] is empty"),
    ([], "inputs is an empty list"),
])
def test_bad_inputs(inputs, mentions):
    with pytest.raises(InvalidInputError) as info:
        ZeroShotClassification.parse_inputs(inputs, 8, _params(candidate_labels="a"))
    assert mentions in str(info.value)


def test_format_adds_the_sequence():
    params = _params(candidate_labels=["a", "b"])
    parsed = ZeroShotClassification.parse_inputs(["s1", "s2"], 8, params)
    results = [{"labels": ["a", "b"], "scores": [0.6, 0.4]},
               {"labels": ["b", "a"], "scores": [0.7, 0.3]}]
    formatted = ZeroShotClassification.format(results, parsed)
    assert [answer["sequence"] for answer in formatted] == ["s1", "s2"]
    assert list(formatted[0]) == ["sequence", "labels", "scores"]
    single = ZeroShotClassification.parse_inputs("s", 8, params)
    assert ZeroShotClassification.format(results[:1], single)["sequence"] == "s"


def test_entailment_id_follows_label2id():
    class Config:
        label2id = {"ENTAILMENT": 0, "neutral": 1, "contradiction": 2}

    class Model:
        config = Config

    task = ZeroShotClassification.from_model(Model)
    assert (task.entailment_id, task.contradiction_id) == (0, -1)
    Config.label2id = {"LABEL_0": 0, "LABEL_1": 1}
    assert ZeroShotClassification.from_model(Model).entailment_id == -1


# --- parity with transformers.pipeline ---------------------------------------------------


class Served:
    """Tokenizer + runner answering like the deployed zero-shot model."""

    def __init__(self, model: str) -> None:
        settings = ModelSpec(name="zs", task="zero-shot-classification", model=model,
                             num_threads=torch.get_num_threads()).load_settings()
        self.runner = ModelRunner.load(settings)
        self.tokenizer = TextTokenizer.load(model)

    def __call__(self, inputs, **parameters):
        task = self.runner.task
        params = task.parameters.model_validate(parameters)
        parsed = task.parse_inputs(inputs, 10_000, params)
        encoded = self.tokenizer.encode(parsed.texts, parsed.text_pairs, params.truncation)
        (rows,) = self.runner.run([encoded])
        return task.format(task.postprocess_request(rows, params, parsed.layout), parsed)


@pytest.fixture(scope="module")
def nli_dir(model_dirs):
    return str(model_dirs["nli"])


@pytest.fixture(scope="module")
def served(nli_dir):
    return Served(nli_dir)


@pytest.fixture(scope="module")
def reference(nli_dir):
    return pipeline("zero-shot-classification", model=nli_dir)


def assert_same(got, want):
    if isinstance(want, dict):
        got, want = [got], [want]
    assert isinstance(got, list) and len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert set(mine) == {"sequence", "labels", "scores"}
        assert mine["sequence"] == theirs["sequence"]
        assert mine["labels"] == theirs["labels"]
        assert np.allclose(mine["scores"], theirs["scores"], atol=SCORE_ATOL)


def test_tiny_nli_model_scores_labels_apart(reference):
    scores = reference(TEXTS[0], candidate_labels=LABELS)["scores"]
    assert max(scores) - min(scores) > 0.01  # ordering is a meaningful check


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("inputs", [TEXTS[0], TEXTS, UNICODE, [LONG_TEXT[:150], "hi", TEXTS[2]]])
def test_parity_with_pipeline(served, reference, inputs, multi_label):
    want = reference(inputs, candidate_labels=LABELS, multi_label=multi_label)
    got = served(inputs, candidate_labels=LABELS, multi_label=multi_label)
    assert isinstance(got, dict) == isinstance(inputs, str)
    assert_same(got, want)


@pytest.mark.parametrize("labels", [["sports"], "politics, music ,food"])
def test_parity_one_label_and_comma_string(served, reference, labels):
    assert_same(served(TEXTS, candidate_labels=labels), reference(TEXTS, candidate_labels=labels))


def test_parity_custom_template_and_unicode_labels(served, reference):
    labels = ["cuisine française", "日本", "émoji 🎉"]
    template = "Ce texte parle de {}."
    want = reference(UNICODE, candidate_labels=labels, hypothesis_template=template)
    got = served(UNICODE, candidate_labels=labels, hypothesis_template=template)
    assert_same(got, want)


def test_long_premise_truncates_only_the_premise_like_the_pipeline(served, reference):
    want = reference([LONG_TEXT, TEXTS[0]], candidate_labels=LABELS)
    assert_same(served([LONG_TEXT, TEXTS[0]], candidate_labels=LABELS), want)
    with pytest.raises(InputTooLongError):
        served(LONG_TEXT, candidate_labels=LABELS, truncation=False)


def test_a_hypothesis_longer_than_the_window_is_422(served):
    template = "word " * 100 + "{}"
    with pytest.raises(InputTooLongError, match="only_first"):
        served("short premise", candidate_labels=["a"], hypothesis_template=template)


def test_probe_parameters_are_valid():
    params = _params(**ZeroShotClassification.probe_parameters)
    assert len(ZeroShotClassification.parse_inputs("health check", 4, params).texts) == 1
