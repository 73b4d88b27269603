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


def served_by(directory: str):
    """Our answers (runner + task post-processing) for the model in ``directory``."""
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
def served(model_dirs):
    return served_by(str(model_dirs["masked"]))


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


# --- RoBERTa: byte-level BPE, ``<mask>`` that swallows the space before it, ``Ġ`` words ---

ROBERTA_TEXTS = [
    "the movie was <mask>.",
    "<mask> love music",  # mask at the start
    "Hello world,<mask> is great",  # right after punctuation
    "Hello world, <mask> is great!",
    "café naïve <mask> 東京 🙂",
    "🙂<mask> Zürich ünïcödé",
    "  leading and trailing spaces <mask>  ",
    "my dog and your <mask>",
    "<mask> and <mask>",  # two masks: one answer list per mask, special tokens kept
]


@pytest.fixture(scope="module")
def roberta_served(model_dirs):
    return served_by(str(model_dirs["roberta-masked"]))


@pytest.fixture(scope="module")
def roberta_reference(model_dirs):
    return pipeline("fill-mask", model=str(model_dirs["roberta-masked"]), device="cpu")


@pytest.mark.parametrize("parameters", [
    {}, {"top_k": 1}, {"top_k": 20},
    {"targets": [" dog", "dog", " cat", "cat"]},  # with and without the leading space
    {"targets": ["Ġdog", " love", "love", "music", " music"], "top_k": 3},
    {"targets": " Paris", "top_k": 2},
    {"targets": ["é", " 東京", "🙂", "Zürich"]},  # not in the vocabulary: first byte piece
])
def test_roberta_answers_equal_the_pipeline(roberta_served, roberta_reference, parameters):
    ours = roberta_served(ROBERTA_TEXTS, **parameters)
    for text, answer in zip(ROBERTA_TEXTS, ours, strict=True):
        assert_same(answer, roberta_reference(text, **parameters))


def test_roberta_targets_with_and_without_a_leading_space(model_dirs, roberta_served):
    """``" dog"`` is the word ``Ġdog``; ``"dog"`` is not in the vocabulary and becomes its
    first sub-token (``do``), as the pipeline picks it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dirs["roberta-masked"]))
    answer = roberta_served(["my <mask> eats"], targets=[" dog", "dog"])[0]
    by_token = {a["token_str"]: a for a in answer}
    assert set(by_token) == {" dog", "do"}
    assert by_token[" dog"]["token"] == tokenizer.convert_tokens_to_ids("Ġdog")
    assert by_token[" dog"]["sequence"] == "my dog eats"  # the mask took the space before it
    assert by_token["do"]["sequence"] == "mydo eats"
    assert roberta_served(["my <mask> eats"], targets="Ġdog")[0][0]["token_str"] == " dog"


def test_roberta_batching_mixed_lengths_changes_nothing(roberta_served):
    together = roberta_served(ROBERTA_TEXTS)
    for text, answer in zip(ROBERTA_TEXTS, together, strict=True):
        (alone,) = roberta_served([text])
        assert_same(answer, alone)


def test_roberta_bert_mask_is_no_mask(roberta_served):
    with pytest.raises(InvalidInputError, match=r"inputs\[0\] has no mask token; write <mask>"):
        roberta_served(["the movie was [MASK]."])


def test_roberta_scores_are_probabilities(roberta_served):
    answer = roberta_served(["the <mask> is good"], top_k=1000)[0]
    assert len(answer) < 1000
    assert np.isclose(sum(a["score"] for a in answer), 1.0, atol=1e-4)


def test_roberta_window_without_model_max_length(model_dirs, tmp_path):
    """A RoBERTa repo whose tokenizer names no model_max_length (transformers 5 no longer
    knows distilroberta-base's 512 by name): the window is max_position_embeddings less the
    padding offset (130 − 2), so a long text is cut to what the position embeddings hold
    instead of crashing the model."""
    import json
    import shutil

    directory = tmp_path / "roberta-no-limit"
    shutil.copytree(model_dirs["roberta-masked"], directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["model_max_length"]
    config_path.write_text(json.dumps(config))
    assert TextTokenizer.load(str(directory)).max_length == 128
    answer = served_by(str(directory))(["<mask> " + "the movie " * 80])[0]
    assert len(answer) == 5 and answer[0]["sequence"].startswith(answer[0]["token_str"])
