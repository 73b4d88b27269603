"""Parity of the served tasks with transformers.pipeline and sentence-transformers.

Models run without Ray: ModelRunner.load(ModelSpec(...).load_settings()) plus
TextTokenizer, exactly the code path of the model and tokenizer deployments.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import pipeline

from serving.config import ModelSpec
from serving.models import resolve_model_source
from serving.runner import ModelRunner
from serving.tokenization import TextTokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
LONG_TEXT = "the movie was really great and i love it, ray serve batches it all. " * 30
TEXTS = ["I love this movie!", "terrible", "the film is not very good, but I like it a lot",
         "Ray Serve batches requests for me."]
PAIRS = [("A man is eating.", "Someone eats."), ("hello", "the capital of france is paris")]
SCORE_ATOL = 1e-4
# The tiny random classifiers' logits differ between inputs by only ~1e-4, so raw logits
# (function_to_apply="none") are also compared at a tolerance that can tell inputs apart.
LOGIT_ATOL = 1e-6
PAD_ATOL = 1e-5
EMB_ATOL = 1e-5


class Served:
    """A tokenizer + runner pair answering like one deployed model."""

    def __init__(self, model: str, task: str, **spec) -> None:
        settings = ModelSpec(name="m", task=task, model=model,
                             num_threads=torch.get_num_threads(), **spec).load_settings()
        self.runner = ModelRunner.load(settings)
        self.tokenizer = TextTokenizer.load(resolve_model_source(model))

    def __call__(self, texts, pairs=None, **parameters):
        task = self.runner.task
        params = task.parameters.model_validate(parameters)
        encoded = self.tokenizer.encode(texts, pairs, truncate=params.truncation)
        (outputs,) = self.runner.run([encoded])
        return [task.postprocess(row, params) for row in outputs]


@pytest.fixture(scope="module")
def served(model_dirs):
    cache: dict[str, Served] = {}

    def get(key: str, task: str = "text-classification", **spec) -> Served:
        name = f"{key}{sorted(spec.items())}"
        if name not in cache:
            model = MINILM if key == "minilm" else str(model_dirs[key])
            cache[name] = Served(model, task, **spec)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def classifiers(model_dirs):
    return {key: pipeline("text-classification", model=str(model_dirs[key]), device="cpu")
            for key in ("sst2", "multilabel")}


def assert_same_labels(ours, theirs, atol=SCORE_ATOL):
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        assert [e["label"] for e in mine] == [e["label"] for e in ref]
        np.testing.assert_allclose([e["score"] for e in mine], [e["score"] for e in ref],
                                   rtol=0, atol=atol)


@pytest.mark.parametrize("key", ["sst2", "multilabel"])
@pytest.mark.parametrize("top_k", [None, 1, 2])
@pytest.mark.parametrize("function", [None, "softmax", "sigmoid", "none"])
def test_classification_matches_pipeline(key, top_k, function, served, classifiers):
    params = {"top_k": top_k} | ({"function_to_apply": function} if function else {})
    theirs = classifiers[key](TEXTS, **params)
    if top_k is None:
        assert len(theirs[0]) == (2 if key == "sst2" else 3)
    ours = served(key)(TEXTS, **params)
    assert_same_labels(ours, theirs, atol=LOGIT_ATOL if function == "none" else SCORE_ATOL)
    if top_k is not None:
        assert all(len(answer) == top_k for answer in ours)


@pytest.mark.parametrize("key", ["sst2", "multilabel"])
@pytest.mark.parametrize("function", [None, "none"])
def test_text_pairs_match_pipeline(key, function, served, classifiers):
    params = {"top_k": None} | ({"function_to_apply": function} if function else {})
    theirs = classifiers[key]([{"text": a, "text_pair": b} for a, b in PAIRS], **params)
    texts, pairs = (list(side) for side in zip(*PAIRS, strict=True))
    assert_same_labels(served(key)(texts, pairs, **params), theirs,
                       atol=LOGIT_ATOL if function == "none" else SCORE_ATOL)


@pytest.mark.parametrize("key", ["sst2", "multilabel"])
def test_padding_does_not_change_classification(key, served):
    model = served(key)
    batched = model(TEXTS, function_to_apply="none")
    for text, answer in zip(TEXTS, batched, strict=True):
        assert_same_labels([answer], model([text], function_to_apply="none"), atol=PAD_ATOL)


def test_runner_groups_outputs_per_item(served):
    model = served("sst2")
    first, second = model.tokenizer.encode(TEXTS[:3]), model.tokenizer.encode(TEXTS[3:])
    grouped = model.runner.run([first, second])
    assert [len(group) for group in grouped] == [3, 1]
    alone = model.runner.run([second])[0][0]
    np.testing.assert_allclose(grouped[1][0], alone, rtol=0, atol=PAD_ATOL)
    assert model.runner.device == "cpu"
    model.runner.health()


def test_length_buckets_give_the_answers_of_one_padded_pass(served):
    model = served("sst2")
    texts = ["short", "a much longer text " * 12, "tiny", "medium sized text here"]
    encoded = model.tokenizer.encode(texts)
    before = model.runner.stats.padded_tokens
    (bucketed,) = model.runner.run([encoded], by_length=True)
    bucketed_padding = model.runner.stats.padded_tokens - before
    (padded,) = model.runner.run([encoded], by_length=False)
    padded_padding = model.runner.stats.padded_tokens - before - bucketed_padding
    for mine, theirs in zip(bucketed, padded, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=PAD_ATOL)
    assert bucketed_padding < padded_padding == len(texts) * max(encoded.lengths)


@pytest.fixture(scope="module")
def st_models(model_dirs):
    return {key: SentenceTransformer(str(model_dirs[key]) if key == "st" else
                                     resolve_model_source(MINILM), device="cpu")
            for key in ("st", "minilm")}


@pytest.mark.parametrize("key", ["st", "minilm"])
def test_embeddings_match_sentence_transformers(key, served, st_models):
    texts = [*TEXTS, LONG_TEXT]
    model = served(key, "feature-extraction")
    assert len(model.tokenizer.encode([LONG_TEXT]).rows()[0][0]) == model.tokenizer.max_length
    ours = np.array(model(texts))
    theirs = st_models[key].encode(texts, convert_to_numpy=True)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=EMB_ATOL)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("key", ["st", "minilm"])
def test_unnormalized_embeddings(key, served, st_models):
    reference = st_models[key]
    unnormalized = SentenceTransformer(modules=[reference[0], reference[1]], device="cpu")
    texts = [*TEXTS, LONG_TEXT]
    theirs = unnormalized.encode(texts, convert_to_numpy=True)
    ours = np.array(served(key, "feature-extraction")(texts, normalize=False))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=EMB_ATOL)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)
    if key == "st":  # the same through the config instead of the request
        configured = np.array(served(key, "feature-extraction", normalize=False)(texts))
        np.testing.assert_allclose(configured, theirs, rtol=0, atol=EMB_ATOL)
        renormalized = served(key, "feature-extraction", normalize=False)(texts, normalize=True)
        np.testing.assert_allclose(renormalized, st_models[key].encode(texts), rtol=0,
                                   atol=EMB_ATOL)


def test_token_embeddings_match_pipeline(model_dirs, served):
    extractor = pipeline("feature-extraction", model=str(model_dirs["encoder"]), device="cpu")
    model = served("encoder", "feature-extraction")
    assert model.runner.task.pooling is None
    answers = model(TEXTS)
    for text, ours in zip(TEXTS, answers, strict=True):
        theirs = np.array(extractor(text))
        assert np.array(ours).shape == theirs.shape == (1, theirs.shape[1], 32)
        np.testing.assert_allclose(np.array(ours), theirs, rtol=0, atol=EMB_ATOL)


def test_padding_does_not_change_embeddings(served):
    model = served("st", "feature-extraction")
    batched = model([*TEXTS, LONG_TEXT])
    for text, row in zip([*TEXTS, LONG_TEXT], batched, strict=True):
        np.testing.assert_allclose(row, model([text])[0], rtol=0, atol=PAD_ATOL)


@pytest.mark.parametrize("pooling", ["cls", "max", "lasttoken", "mean"])
def test_pooling_overrides(pooling, model_dirs, served):
    from transformers import AutoModel

    model = served("st", "feature-extraction", pooling=pooling)
    encoder = AutoModel.from_pretrained(str(model_dirs["st"])).eval()
    for text in TEXTS[:3]:
        ids = model.tokenizer.encode([text]).rows()[0][0].astype(np.int64)
        with torch.inference_mode():
            hidden = encoder(input_ids=torch.from_numpy(ids)[None]).last_hidden_state[0].numpy()
        expected = {"cls": hidden[0], "max": hidden.max(axis=0), "lasttoken": hidden[-1],
                    "mean": hidden.mean(axis=0)}[pooling]
        expected = expected / np.linalg.norm(expected)  # the config's Normalize module
        np.testing.assert_allclose(model([text])[0], expected, rtol=0, atol=EMB_ATOL)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_health_reports_a_broken_model(model_dirs, bad):
    model = Served(str(model_dirs["sst2"]), "text-classification")  # its own copy: broken below
    model.runner.health()
    name, weight = list(model.runner.model.named_parameters())[-3]  # not the first one
    with torch.no_grad():
        weight.view(-1)[-1] = bad
    with pytest.raises(RuntimeError, match=f"weight {re.escape(name)} holds NaN or infinite"):
        model.runner.health()


def test_health_of_an_int8_model(model_dirs):
    """Dynamic int8 Linear layers hold packed weights, not parameters: the check covers the
    floating-point weights that remain (embeddings, layer norms)."""
    model = Served(str(model_dirs["sst2"]), "text-classification", quantize="int8")
    model.runner.health()
    with torch.no_grad():
        next(model.runner.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        model.runner.health()


def test_health_accepts_large_half_precision_weights(model_dirs):
    """The check sums each weight in float32: finite half-precision weights whose sum
    exceeds float16's range (65504) are not mistaken for infinite ones."""
    model = Served(str(model_dirs["sst2"]), "text-classification")
    model.runner.model.half()
    with torch.no_grad():
        next(model.runner.model.parameters()).fill_(60000.0)
    model.runner.health()


def test_health_reports_forward_passes_that_keep_failing(model_dirs, monkeypatch):
    from serving.runner import MAX_FAILURES_IN_A_ROW

    model = Served(str(model_dirs["sst2"]), "text-classification")
    encoded = model.tokenizer.encode(TEXTS[:2])
    forward = model.runner._forward

    def broken(*args):
        raise RuntimeError("device lost")

    monkeypatch.setattr(model.runner, "_forward", broken)
    for _ in range(MAX_FAILURES_IN_A_ROW - 1):
        with pytest.raises(RuntimeError, match="device lost"):
            model.runner.run([encoded])
    model.runner.health()  # one bad request fails a batch or two, not the replica
    with pytest.raises(RuntimeError, match="device lost"):
        model.runner.run([encoded])
    with pytest.raises(RuntimeError, match="forward passes failed"):
        model.runner.health()
    monkeypatch.setattr(model.runner, "_forward", forward)
    model.runner.run([encoded])  # a success clears it
    model.runner.health()
