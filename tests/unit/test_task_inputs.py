"""Unit tests of request validation that needs no model: Task.parse_inputs, Task.format
and the per-task parameter models (unknown keys, ranges, the "truncate" alias)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.errors import InvalidInputError
from serving.tasks import TASKS, TaskInputs, task_class
from serving.tasks.feature_extraction import FeatureExtraction, FeatureExtractionParameters
from serving.tasks.text_classification import TextClassification, TextClassificationParameters

# Tasks whose inputs are texts (question-answering takes {"question", "context"} objects:
# see test_question_answering.py).
ALL_TASKS = sorted(set(TASKS) - {"question-answering"})
PAIR = {"text": "A man is eating.", "text_pair": "Someone eats."}


@pytest.mark.parametrize("task", ALL_TASKS)
def test_single_string_and_list(task):
    cls = task_class(task)
    single = cls.parse_inputs("hello", max_inputs=4)
    assert (single.texts, single.text_pairs, single.single) == (["hello"], None, True)
    many = cls.parse_inputs(["a", "b c"], max_inputs=4)
    assert (many.texts, many.text_pairs, many.single) == (["a", "b c"], None, False)
    assert cls.parse_inputs(["x"] * 4, max_inputs=4).texts == ["x"] * 4  # limit is inclusive


@pytest.mark.parametrize("task", ALL_TASKS)
@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([], "inputs is an empty list"),
        ("   \n\t", "inputs is empty"),
        (["fine", "  "], "inputs[1] is empty"),
        (["fine", 5], "inputs[1] must be a string, got int"),
        (["fine", "ok", None], "inputs[2] must be a string, got NoneType"),
        ([["nested"]], "inputs[0] must be a string, got list"),
        (42, "inputs must be a string, got int"),
        (["x"] * 5, "inputs has 5 items, more than the limit of 4"),
    ],
)
def test_bad_inputs_name_the_input(task, inputs, fragment):
    with pytest.raises(InvalidInputError) as info:
        task_class(task).parse_inputs(inputs, max_inputs=4)
    assert fragment in str(info.value)
    assert info.value.error_type == "validation"


def test_pairs_accepted_by_text_classification():
    single = TextClassification.parse_inputs(PAIR, max_inputs=4)
    assert single.texts == [PAIR["text"]] and single.text_pairs == [PAIR["text_pair"]]
    assert single.single is True
    many = TextClassification.parse_inputs([PAIR, {"text": "a", "text_pair": "b"}], 4)
    assert many.texts == [PAIR["text"], "a"] and many.text_pairs == [PAIR["text_pair"], "b"]
    assert many.single is False


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([PAIR, {"text": "a"}], "inputs[1] must be an object with 'text' and 'text_pair'"),
        ([{**PAIR, "label": 1}], "inputs[0] must be an object with 'text' and 'text_pair'"),
        ({"text": "a", "text_pair": " "}, "inputs.text_pair is empty"),
        ([PAIR, {"text": 3, "text_pair": "b"}], "inputs[1].text must be a string, got int"),
        ([PAIR, "plain"], "inputs[0] must be a string, got dict"),
    ],
)
def test_bad_pairs_name_the_input(inputs, fragment):
    with pytest.raises(InvalidInputError) as info:
        TextClassification.parse_inputs(inputs, max_inputs=4)
    assert fragment in str(info.value)


@pytest.mark.parametrize("inputs,message", [
    (PAIR, "inputs must have 'source_sentence' and 'sentences'"),
    ([PAIR], r"inputs\[0\] must be a string, got dict"),
])
def test_pairs_rejected_by_feature_extraction(inputs, message):
    with pytest.raises(InvalidInputError, match=message):
        FeatureExtraction.parse_inputs(inputs, max_inputs=4)


def test_similarity_inputs_put_the_source_first():
    parsed = FeatureExtraction.parse_inputs(
        {"source_sentence": "s", "sentences": ["a", "b"]}, max_inputs=4)
    assert (parsed.texts, parsed.single, parsed.layout) == (["s", "a", "b"], True, "similarity")
    with pytest.raises(InvalidInputError, match="limit of 2"):
        FeatureExtraction.parse_inputs({"source_sentence": "s", "sentences": ["a", "b"]}, 2)


def test_format_follows_the_inference_api():
    one, two = TaskInputs(["a"], None, single=True), TaskInputs(["a", "b"], None, single=False)
    assert FeatureExtraction.format([[0.1, 0.2]], one) == [0.1, 0.2]
    assert FeatureExtraction.format([[0.1], [0.2]], two) == [[0.1], [0.2]]
    answer = [{"label": "POSITIVE", "score": 0.9}]
    assert TextClassification.format([answer], one) == [answer]


@pytest.mark.parametrize("parameters", [TextClassificationParameters, FeatureExtractionParameters])
def test_parameters_reject_unknown_keys(parameters):
    with pytest.raises(ValidationError, match="bogus"):
        parameters.model_validate({"bogus": 1})


@pytest.mark.parametrize("parameters", [TextClassificationParameters, FeatureExtractionParameters])
def test_truncate_is_an_alias_of_truncation(parameters):
    assert parameters.model_validate({}).truncation is True
    assert parameters.model_validate({"truncation": False}).truncation is False
    assert parameters.model_validate({"truncate": False}).truncation is False


@pytest.mark.parametrize("top_k", [0, -1, 10**9, 1.5])
def test_top_k_range(top_k):
    with pytest.raises(ValidationError, match="top_k"):
        TextClassificationParameters.model_validate({"top_k": top_k})


def test_text_classification_parameters():
    params = TextClassificationParameters.model_validate(
        {"top_k": 2, "function_to_apply": "sigmoid"})
    assert (params.top_k, params.function_to_apply) == (2, "sigmoid")
    assert TextClassificationParameters.model_validate({"top_k": 100_000}).top_k == 100_000
    with pytest.raises(ValidationError, match="function_to_apply"):
        TextClassificationParameters.model_validate({"function_to_apply": "relu"})


def test_feature_extraction_parameters():
    assert FeatureExtractionParameters.model_validate({}).normalize is None
    assert FeatureExtractionParameters.model_validate({"normalize": False}).normalize is False
    with pytest.raises(ValidationError, match="top_k"):
        FeatureExtractionParameters.model_validate({"top_k": 1})


def test_parameters_are_frozen():
    params = TextClassificationParameters.model_validate({"top_k": 1})
    with pytest.raises(ValidationError):
        params.top_k = 2
