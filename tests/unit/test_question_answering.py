"""question-answering parity with the transformers 4.x pipeline, run without Ray.

transformers 5 has no question-answering pipeline: the expected answers were recorded with
4.x by ``tests/golden/record_qa.py`` from the committed tiny models next to it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from serving.config import ModelSpec
from serving.errors import InputTooLongError, InvalidInputError
from serving.runner import ModelRunner
from serving.schemas.inference_api import InferenceRequest
from serving.tasks import task_class
from serving.tasks.question_answering import QuestionAnswering, QuestionAnsweringParameters
from serving.tokenization import TextTokenizer

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RECORDED = json.loads((GOLDEN / "qa_answers.json").read_text())
MODELS = sorted(RECORDED["models"])
CASES = [(model, case) for model in MODELS for case in RECORDED["models"][model]["cases"]]


def _served(model: str):
    directory = str(GOLDEN / model)
    spec = ModelSpec(name="qa", task="question-answering", model=directory,
                     num_threads=torch.get_num_threads())
    return ModelRunner.load(spec.load_settings()), TextTokenizer.load(directory)


@pytest.fixture(scope="module")
def served():
    loaded = {model: _served(model) for model in MODELS}

    def run(model: str, inputs, split: int | None = None, **parameters):
        """The formatted answer to ``inputs``; ``split`` encodes the inputs as two items of
        one model call (as coalesced requests are)."""
        runner, tokenizer = loaded[model]
        params = QuestionAnsweringParameters.model_validate(parameters)
        parsed = QuestionAnswering.parse_inputs(inputs, 100, params)
        window = QuestionAnswering.window(params)
        encoded = tokenizer.encode(parsed.texts, parsed.text_pairs,
                                   windows=[window] * len(parsed.texts))
        items = [encoded] if split is None else [
            tokenizer.encode(part, pairs, windows=[window] * len(part))
            for part, pairs in ((parsed.texts[:split], parsed.text_pairs[:split]),
                                (parsed.texts[split:], parsed.text_pairs[split:]))
        ]
        rows = [row for group in runner.run(items) for row in group]
        tokens = [row for item in items for row in item.window_rows()]
        if split is not None:  # owners restart per item: renumber them
            offset = items[0].num_inputs
            tokens = tokens[: len(items[0])] + [
                replace(row, owner=row.owner + offset) for row in tokens[len(items[0]):]
            ]
        answers = runner.task.postprocess_request(
            rows, params, parsed.layout, tokens=tokens, texts=tuple(parsed.texts),
            text_pairs=tuple(parsed.text_pairs),
        )
        return runner.task.format(answers, parsed, params)

    return run


def normalized(answer, inputs, top_k: int):
    """The 4.x pipeline's answer in this server's shapes: one answer (a dict when top_k is
    1, else a list) per input; a list for list inputs (the pipeline unwraps lists of one
    input, and answers a dict whenever one answer remains)."""
    def one(value):
        if top_k == 1:
            return value
        return value if isinstance(value, list) else [value]

    if isinstance(inputs, list):
        answers = answer if len(inputs) > 1 else [answer]
        return [one(a) for a in answers]
    return one(answer)


def assert_same(got, expected) -> None:
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (got, expected)
        for mine, theirs in zip(got, expected, strict=True):
            assert_same(mine, theirs)
        return
    assert isinstance(got, dict), got
    assert set(got) == {"score", "start", "end", "answer"}
    assert {k: got[k] for k in ("start", "end", "answer")} == {
        k: expected[k] for k in ("start", "end", "answer")}, (got, expected)
    assert isinstance(got["score"], float)
    assert abs(got["score"] - expected["score"]) < 1e-4, (got, expected)


@pytest.mark.parametrize(("model", "case"), CASES,
                         ids=[f"{model}-{case['name']}" for model, case in CASES])
def test_golden_parity(served, model, case):
    parameters = case["parameters"]
    got = served(model, case["inputs"], **parameters)
    assert_same(got, normalized(case["expected"], case["inputs"], parameters.get("top_k", 1)))


def test_split_batches_give_the_same_answers(served):
    case = next(c for c in RECORDED["models"][MODELS[0]]["cases"]
                if c["name"] == "long_stride_impossible")
    inputs = case["inputs"] + case["inputs"]
    got = served(MODELS[0], inputs, split=3, **case["parameters"])
    expected = normalized(case["expected"], case["inputs"], 1)
    assert_same(got, expected + expected)


@pytest.mark.parametrize("model", MODELS)
def test_transformers_5_loads_the_same_model(model):
    """The committed weights and tokenizer give, on transformers 5, the 4.x logits."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    probe = RECORDED["models"][model]["probe"]
    tokenizer = AutoTokenizer.from_pretrained(GOLDEN / model)
    loaded = AutoModelForQuestionAnswering.from_pretrained(GOLDEN / model).eval()
    encoded = tokenizer(probe["question"], probe["context"], return_tensors="pt")
    assert encoded["input_ids"][0].tolist() == probe["input_ids"]
    with torch.no_grad():
        output = loaded(**encoded)
    np.testing.assert_allclose(output.start_logits[0].numpy(), probe["start_logits"], atol=1e-5)
    np.testing.assert_allclose(output.end_logits[0].numpy(), probe["end_logits"], atol=1e-5)


def test_long_context_makes_several_windows():
    _, tokenizer = _served(MODELS[0])
    case = next(c for c in RECORDED["models"][MODELS[0]]["cases"] if c["name"] == "long_stride")
    inputs = case["inputs"]
    encoded = tokenizer.encode(
        [inputs["question"], "short?"], [inputs["context"], "a short context"],
        windows=[(48, 16), (None, None)],
    )
    owners = encoded.owners.tolist()
    assert owners[0] == 0 and owners[-1] == 1 and owners.count(1) == 1
    assert owners.count(0) > 3 and encoded.num_inputs == 2
    assert int(encoded.lengths[: owners.count(0)].max()) <= 48
    assert encoded.row_ranges([1, 1]) == [(0, owners.count(0)), (owners.count(0), len(owners))]
    rows = encoded.window_rows()
    # Consecutive windows share doc_stride context tokens.
    first, second = (row.offsets[row.sequence_ids == 1] for row in rows[:2])
    assert [tuple(x) for x in first[-16:]] == [tuple(x) for x in second[:16]]
    # Chunks keep the owners of their rows.
    pieces = encoded.chunks(2)
    assert np.concatenate([p.owners for p in pieces]).tolist() == owners


def test_windows_refuse_what_cannot_be_split():
    _, tokenizer = _served(MODELS[0])
    context = " ".join(["paris is a city"] * 40)
    with pytest.raises(InputTooLongError, match="question has"):
        tokenizer.encode([" ".join(["what"] * 30)], [context], windows=[(16, 2)])
    with pytest.raises(InvalidInputError, match="doc_stride"):
        tokenizer.encode(["what?"], [context], windows=[(16, 12)])
    with pytest.raises(InvalidInputError, match="larger than max_seq_len"):
        tokenizer.encode(["what?"], [context], windows=[(None, 500)])  # 128 after the cap
    # A context that fits needs no split: any stride up to max_seq_len is fine.
    assert len(tokenizer.encode(["what?"], ["paris"], windows=[(16, 12)])) == 1


@pytest.mark.parametrize("parameters", [
    {"top_k": 0}, {"top_k": "3"}, {"top_k": 1.5}, {"max_answer_len": 0}, {"doc_stride": -1},
    {"max_seq_len": 4}, {"max_seq_len": 32, "doc_stride": 40},
    {"handle_impossible_answer": "yes"}, {"align_to_words": 1}, {"padding": "max_length"},
    {"unknown": 1},
])
def test_bad_parameters_are_rejected(parameters):
    with pytest.raises(ValidationError):
        QuestionAnsweringParameters.model_validate(parameters)


def test_defaults():
    params = QuestionAnsweringParameters()
    assert (params.top_k, params.doc_stride, params.max_answer_len, params.max_seq_len,
            params.max_question_len, params.handle_impossible_answer,
            params.align_to_words) == (1, None, 15, None, 64, False, True)
    assert QuestionAnswering.window(params) == (None, None)
    assert task_class("question-answering") is QuestionAnswering


@pytest.mark.parametrize(("inputs", "message"), [
    ({"question": "q?"}, "inputs must be an object with 'question' and 'context'"),
    ({"context": "c"}, "inputs must be an object"),
    ({"question": "q?", "context": "c", "extra": 1}, "inputs must be an object"),
    ({"question": " ", "context": "c"}, "inputs.question is empty"),
    ({"question": "q?", "context": ""}, "inputs.context is empty"),
    ({"question": 3, "context": "c"}, "inputs.question must be a string"),
    ([{"question": "q?", "context": "c"}, "text"], r"inputs\[1\] must be an object"),
    ([], "empty list"),
    ("just a text", "inputs must be an object"),
])
def test_bad_inputs_are_rejected(inputs, message):
    with pytest.raises(InvalidInputError, match=message):
        QuestionAnswering.parse_inputs(inputs, 10)


def test_too_many_inputs():
    with pytest.raises(InvalidInputError, match="limit of 2"):
        QuestionAnswering.parse_inputs([{"question": "q", "context": "c"}] * 3, 2)


def test_schema_accepts_question_context_objects():
    one = InferenceRequest.model_validate({"inputs": {"question": "q", "context": "c"}})
    assert one.raw_inputs() == {"question": "q", "context": "c"}
    many = InferenceRequest.model_validate(
        {"inputs": [{"question": "q", "context": "c"}, {"question": "r", "context": "d"}]})
    assert many.raw_inputs()[1] == {"question": "r", "context": "d"}
    with pytest.raises(ValidationError, match="question"):
        InferenceRequest.model_validate({"inputs": {"question": "q"}})
