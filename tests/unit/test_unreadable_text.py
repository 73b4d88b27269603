"""Unit tests of the checks refusing text that cannot be served (issue 6): lone surrogates,
NUL and control-only text, and of the messages for bodies that are not a JSON object."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from serving.errors import InvalidInputError, describe_validation_errors
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.openai import EmbeddingsRequest
from serving.schemas.text import find_unreadable_text, text_problem
from serving.tasks.base import check_text


@pytest.mark.parametrize(("text", "problem"), [
    ("fine text", None),
    ("caf\u00e9 \U0001f600 \u6771\u4eac", None),
    ("tab\tand\nbell\u0007", None),
    ("a\ud800b", "lone surrogate (U+D800) at index 1"),
    ("\udfff", "lone surrogate (U+DFFF) at index 0"),
    ("ab\x00", "NUL character (U+0000) at index 2"),
])
def test_text_problem(text, problem):
    found = text_problem(text)
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize(("value", "where"), [
    ({"inputs": ["a", "b\ud800"]}, "inputs[1]: contains a lone surrogate"),
    ({"inputs": "x", "parameters": {"stop": ["a", "\x00"]}}, "parameters.stop[1]: contains a NUL"),
    ({"inputs": "x", "parameters": {"\ud800": 1}}, "parameters: a key contains"),
    ("\x00", "request body: contains a NUL"),
])
def test_find_unreadable_text_names_the_field(value, where):
    assert where in find_unreadable_text(value)


def test_find_unreadable_text_passes_clean_and_deeply_nested_values():
    nested: list = []
    for _ in range(100_000):  # deeper than Python's recursion limit
        nested = [nested]
    assert find_unreadable_text({"inputs": ["a", {"b": [1, None, 2.5]}], "x": nested}) is None


@pytest.mark.parametrize(("schema", "data", "fragment"), [
    (InferenceRequest, {"inputs": "\ud800"}, "inputs: contains a lone surrogate"),
    (InferenceRequest, json.loads(b'{"inputs": "a\xed\xa0\x80"}'), "inputs: contains a lone"),
    (InferenceRequest, {"inputs": "x", "parameters": {"labels": "{}\x00"}},
     "parameters.labels: contains a NUL"),
    (EmbeddingsRequest, {"model": "m", "input": ["a", "\ud800"]}, "input[1]: contains a lone"),
])
def test_requests_refuse_unreadable_text(schema, data, fragment):
    with pytest.raises(ValidationError) as info:
        schema.model_validate(data)
    assert fragment in describe_validation_errors(info.value.errors())


@pytest.mark.parametrize(("text", "fragment"), [
    ("\x01\x02\x1b", "inputs is empty (only whitespace and control characters)"),
    (" \x7f\n", "inputs is empty"),
    ("a\x00", "inputs contains a NUL character"),
    ("\ud800", "inputs contains a lone surrogate"),
])
def test_check_text_refuses_what_has_nothing_to_read(text, fragment):
    with pytest.raises(InvalidInputError) as info:
        check_text(text, "inputs")
    assert fragment in info.value.message


@pytest.mark.parametrize(("error", "message"), [
    ({"type": "missing", "loc": ("body",), "msg": "Field required"},
     "request body is empty; send a JSON object"),
    ({"type": "model_attributes_type", "loc": ("body",), "msg": "m", "input": [1]},
     "request body must be a JSON object, not an array"),
    ({"type": "model_attributes_type", "loc": ("body",), "msg": "m", "input": None},
     "request body must be a JSON object, not null"),
    ({"type": "model_attributes_type", "loc": ("body",), "msg": "m", "input": b"{}"},
     "request body must be a JSON object sent with Content-Type: application/json"),
    ({"type": "missing", "loc": ("body", "inputs"), "msg": "Field required"},
     "inputs: Field required"),
])
def test_body_level_errors_say_what_the_body_should_be(error, message):
    assert describe_validation_errors([error]) == message
