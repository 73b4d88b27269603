"""``engine: onnx`` and ``engine: openvino``: ONNX Runtime and OpenVINO answer as PyTorch
(and so as transformers.pipeline), big passes stay in PyTorch, and a model that cannot be
exported is served by PyTorch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sentence_transformers import SentenceTransformer

from serving.config import ModelSpec
from serving.engines import onnx_engine
from serving.engines.torch_engine import TorchEngine
from serving.models import resolve_model_source
from serving.runner import ModelRunner
from serving.tokenization import TextTokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["I love this movie!", "terrible", "the film is not very good, but I like it a lot",
         "Ray Serve batches requests for me.", "the weather in Paris is sunny today " * 6]
ATOL = RTOL = 1e-5  # float32 sums in another order: ~1e-6 of the values' size


def _load(model: str, task: str, **spec) -> ModelRunner:
    return ModelRunner.load(ModelSpec(name="m", task=task, model=model,
                                      num_threads=torch.get_num_threads(), **spec).load_settings())


def _answers(runner: ModelRunner, tokenizer: TextTokenizer, texts, pairs=None) -> list:
    encoded = tokenizer.encode(texts, pairs, truncate=True)
    (rows,) = runner.run([encoded])
    return rows


def _assert_rows_close(ours, theirs) -> None:
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        if isinstance(ref, tuple):  # fill-mask: (token ids, logits at the masks)
            np.testing.assert_array_equal(mine[0], ref[0])
            mine, ref = mine[1], ref[1]
        np.testing.assert_allclose(np.asarray(mine), np.asarray(ref), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("key", "task"), [
    ("sst2", "text-classification"),          # DistilBERT: no token types
    ("cross-encoder", "text-classification"),  # BERT with text pairs (token types)
    ("st", "feature-extraction"),
    ("encoder", "feature-extraction"),        # token embeddings, one row per token
    ("ner", "token-classification"),
    ("roberta-ner", "token-classification"),
    ("masked", "fill-mask"),
    ("nli", "zero-shot-classification"),
])
@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_exported_engines_answer_as_pytorch(model_dirs, key, task, engine):
    model = str(model_dirs[key])
    tokenizer = TextTokenizer.load(model)
    onnx = _load(model, task, engine=engine)
    plain = _load(model, task)
    assert (onnx.engine.name, plain.engine.name) == (engine, "torch")
    texts = [text.replace("movie", "[MASK]") for text in TEXTS] if task == "fill-mask" else TEXTS
    pairs = ["a second text", "x", "and another", "y", "z"] if key == "cross-encoder" else None
    _assert_rows_close(_answers(onnx, tokenizer, texts, pairs),
                       _answers(plain, tokenizer, texts, pairs))
    for text in texts[:2]:  # one text: a pass of one row, no padding
        _assert_rows_close(_answers(onnx, tokenizer, [text]), _answers(plain, tokenizer, [text]))


def test_minilm_embeddings_match_sentence_transformers():
    runner = _load(MINILM, "feature-extraction", engine="onnx")
    assert runner.engine.name == "onnx"
    tokenizer = TextTokenizer.load(resolve_model_source(MINILM))
    reference = SentenceTransformer(resolve_model_source(MINILM), device="cpu")
    params = runner.task.parameters.model_validate({})
    ours = np.array([runner.task.postprocess(row, params)
                     for row in _answers(runner, tokenizer, TEXTS)])
    np.testing.assert_allclose(ours, reference.encode(TEXTS), rtol=0, atol=ATOL)


def test_big_passes_run_in_pytorch(model_dirs, monkeypatch):
    runner = _load(str(model_dirs["st"]), "feature-extraction", engine="onnx")
    tokenizer = TextTokenizer.load(str(model_dirs["st"]))
    engine = runner.engine
    calls = {"onnx": 0, "torch": 0}
    session_run, torch_forward = engine._session.run, engine.model.forward

    def counted(kind, call):
        def wrapper(*args, **kwargs):
            calls[kind] += 1
            return call(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(engine._session, "run", counted("onnx", session_run), raising=False)
    monkeypatch.setattr(engine.model, "forward", counted("torch", torch_forward))
    small = _answers(runner, tokenizer, TEXTS[:2])
    passes = calls["onnx"]
    assert passes > 0 and calls["torch"] == 0
    monkeypatch.setattr(engine, "torch_above_tokens", 0)  # every pass is bigger
    _assert_rows_close(_answers(runner, tokenizer, TEXTS[:2]), small)
    assert calls == {"onnx": passes, "torch": passes}


def test_a_failed_export_keeps_pytorch(model_dirs, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_engine, "_export", broken)
    with caplog.at_level(logging.WARNING, logger="serving.engines.onnx_engine"):
        runner = _load(str(model_dirs["sst2"]), "text-classification", engine="onnx")
    assert runner.engine.name == "torch"
    assert "keeping PyTorch (RuntimeError: unsupported operator)" in caplog.text


def test_a_mismatching_export_keeps_pytorch(model_dirs, monkeypatch, caplog):
    """The export is checked on inputs unlike its sample: wrong outputs are never served."""
    monkeypatch.setattr(onnx_engine, "TOLERANCE", -1.0)  # any difference is too much
    with caplog.at_level(logging.WARNING, logger="serving.engines.onnx_engine"):
        runner = _load(str(model_dirs["sst2"]), "text-classification", engine="onnx")
    assert runner.engine.name == "torch"
    assert "logits differs from PyTorch" in caplog.text


def test_other_devices_keep_pytorch(model_dirs, caplog):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dirs["sst2"]))
    with caplog.at_level(logging.WARNING, logger="serving.engines.onnx_engine"):
        engine = TorchEngine(model, "cuda", "float32")
        assert onnx_engine.accelerate(engine, 1) is engine
    assert "CPU only" in caplog.text


def test_health_reads_the_pytorch_weights(model_dirs):
    runner = _load(str(model_dirs["sst2"]), "text-classification", engine="onnx")
    runner.health()
    with torch.no_grad():
        next(runner.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        runner.health()


@pytest.mark.parametrize(("spec", "message"), [
    ({"task": "feature-extraction", "quantize": "int8"}, "do not combine"),
    ({"task": "text-generation"}, "generates text"),
    ({"task": "summarization"}, "generates text"),
])
def test_config_refuses_what_onnx_cannot_run(model_dirs, spec, message):
    with pytest.raises(ValidationError, match=message):
        ModelSpec(name="m", model=str(model_dirs["st"]), engine="onnx", **spec)


def test_on_copy_traces_a_copy_and_serves_the_original(model_dirs, monkeypatch):
    """A pool exports a member that keeps serving meanwhile: the exporter (which hooks every
    module it traces) gets a copy; the engine keeps the original for its big passes."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dirs["sst2"])).eval()
    traced = []
    export = onnx_engine._export
    monkeypatch.setattr(onnx_engine, "_export",
                        lambda module, *args: traced.append(module) or export(module, *args))
    onnx = onnx_engine.accelerate(TorchEngine(model, "cpu", torch.float32), 1, on_copy=True)
    assert onnx.name == "onnx" and onnx.model is model
    assert len(traced) == 1 and traced[0] is not model
    sample = onnx_engine._sample(model, ["input_ids", "attention_mask"], 2, 7, seed=3)
    with torch.no_grad():
        expected = model(**sample).logits
    np.testing.assert_allclose(onnx.forward(sample).logits.numpy(), expected.numpy(),
                               rtol=RTOL, atol=ATOL)
