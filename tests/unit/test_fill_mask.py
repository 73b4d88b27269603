"""fill-mask parity with ``transformers.pipeline("fill-mask")``, run without Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import pipeline

from serving.config import ModelSpec
from serving.errors import InvalidInputError
from serving.runner import ModelRunner
from serving.tasks.fill_mask import FillMaskParameters
from serving.tokenization import TextTokenizer

TEXTS = [
    "the movie was [MASK].",
    "paris is the capital of [MASK] and berlin is a city.",
    "café [MASK] 東京 🙂",
    "[MASK] love [MASK] music",
]


@pytest.fixture(scope="module")
def served(model_dirs):
    directory = str(model_dirs["masked"])
    spec = ModelSpec(name="m", task="fill-mask", model=directory,
                     num_threads=torch.get_num_threads())
    runner = ModelRunner.load(spec.load_settings())
    tokenizer = TextTokenizer.load(directory)

    def run(texts: list[str], **parameters):
        params = FillMaskParameters.model_validate(parameters)
        (rows,) = runner.run([tokenizer.encode(texts)])
        return runner.task.postprocess_request(rows, params, "texts")

    return run


@pytest.fixture(scope="module")
def reference(model_dirs):
    return pipeline("fill-mask", model=str(model_dirs["masked"]), device="cpu")


def assert_same(ours, theirs) -> None:
    if isinstance(theirs, dict):
        assert {k: v for k, v in ours.items() if k != "score"} == {
            k: v for k, v in theirs.items() if k != "score"}
        assert abs(ours["score"] - theirs["score"]) < 1e-4
        return
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        assert_same(mine, expected)


@pytest.mark.parametrize("parameters", [{}, {"top_k": 1}, {"top_k": 12},
                                        {"targets": ["good", "bad", "music"]},
                                        {"targets": "france", "top_k": 3}])
def test_answers_equal_the_pipeline(served, reference, parameters):
    ours = served(TEXTS, **parameters)
    for text, answer in zip(TEXTS, ours, strict=True):
        assert_same(answer, reference(text, **parameters))


def test_batching_mixed_lengths_changes_nothing(served):
    together = served(TEXTS)
    for text, answer in zip(TEXTS, together, strict=True):
        (alone,) = served([text])
        assert_same(answer, alone)


def test_an_input_without_mask_names_itself(served):
    with pytest.raises(InvalidInputError, match=r"inputs\[1\] has no mask token"):
        served(["a [MASK]", "no mask here"])


def test_unknown_targets_are_refused(served):
    with pytest.raises(InvalidInputError, match="targets"):
        served(["a [MASK]"], targets=[""])


@pytest.mark.parametrize("parameters", [{"top_k": 0}, {"top_k": 10**9}, {"targets": []},
                                        {"targets": 3}])
def test_bad_parameters(parameters):
    with pytest.raises(ValidationError):
        FillMaskParameters.model_validate(parameters)


def test_scores_are_probabilities(served):
    answer = served(["the [MASK] is good"], top_k=1000)[0]
    assert len(answer) < 1000  # top_k past the vocabulary size returns the whole vocabulary
    assert np.isclose(sum(a["score"] for a in answer), 1.0, atol=1e-4)
