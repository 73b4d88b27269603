"""Unit tests of feature-extraction pooling: reading the sentence-transformers config of a
model directory, the torch pooling function on padded batches, and parity with
sentence-transformers for every pooling mode it defines."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from serving.batching import EncodedInputs
from serving.pooling import parse_pooling_config, pool, sentence_transformers_pooling

POOL_ATOL = 1e-6
EMB_ATOL = 1e-5


def _st_dir(tmp_path, pooling: dict, normalize: bool = True):
    """A model dir holding only modules.json and 1_Pooling/config.json."""
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir(exist_ok=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return str(tmp_path)


def test_tiny_and_real_configs(model_dirs, minilm_dir):
    assert sentence_transformers_pooling(str(model_dirs["st"]), None) == (("mean",), True)
    assert sentence_transformers_pooling(str(minilm_dir), None) == (("mean",), True)
    assert sentence_transformers_pooling(str(model_dirs["encoder"]), None) is None


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
     ({"pooling_mode_max_tokens": True}, "max"),
     ({"pooling_mode_lasttoken": True}, "lasttoken"),
     ({"pooling_mode_mean_tokens": True}, "mean"),
     ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, ("cls", "mean")),
     ({"pooling_mode_weightedmean_tokens": True}, "weightedmean"),
     ({"word_embedding_dimension": 32}, "mean"),  # no mode set: sentence-transformers' default
     ({"pooling_mode": "cls", "embedding_dimension": 32}, "cls"),  # the v6 format
     ({"pooling_mode": ["max", "mean"]}, ("max", "mean")),
     ({"pooling_mode": "lasttoken"}, "lasttoken")],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_modes_and_normalize(tmp_path, pooling, expected, normalize):
    modes = (expected,) if isinstance(expected, str) else expected
    assert sentence_transformers_pooling(_st_dir(tmp_path, pooling, normalize), None) == (
        modes, normalize)


@pytest.mark.parametrize("config", [{"pooling_mode": "median"}, {"pooling_mode": []}])
def test_unknown_or_missing_modes_are_refused(config):
    with pytest.raises(ValueError, match="unsupported pooling"):
        parse_pooling_config(config)


@pytest.fixture(scope="module")
def padded():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=generator)
    lengths = [5, 2, 3]
    mask = torch.tensor([[1] * n + [0] * (5 - n) for n in lengths])
    return hidden, mask, lengths


@pytest.mark.parametrize("mode", ["mean", "max", "cls", "lasttoken"])
def test_pool_ignores_padding(mode, padded):
    hidden, mask, lengths = padded
    pooled = pool(hidden, mask, (mode,)).numpy()
    for i, n in enumerate(lengths):
        tokens = hidden[i, :n].numpy()
        expected = {"mean": tokens.mean(axis=0), "max": tokens.max(axis=0), "cls": tokens[0],
                    "lasttoken": tokens[-1]}[mode]
        np.testing.assert_allclose(pooled[i], expected, rtol=0, atol=POOL_ATOL)


@pytest.fixture(scope="module")
def st_copy(model_dirs, tmp_path_factory):
    """A copy of the tiny sentence-transformers model whose pooling config tests rewrite."""
    def make(pooling_mode: str | list[str], normalize: bool):
        directory = tmp_path_factory.mktemp("st-variant")
        shutil.copytree(model_dirs["st"], directory, dirs_exist_ok=True)
        modules = json.loads((directory / "modules.json").read_text())
        if not normalize:
            modules = [m for m in modules if not m["type"].endswith(".Normalize")]
        (directory / "modules.json").write_text(json.dumps(modules))
        (directory / "1_Pooling" / "config.json").write_text(
            json.dumps({"embedding_dimension": 32, "pooling_mode": pooling_mode}))
        return directory
    return make


@pytest.mark.parametrize(("pooling_mode", "normalize"), [
    ("weightedmean", True), ("mean_sqrt_len_tokens", False), ("max", True), ("cls", False),
    ("lasttoken", True), (["cls", "mean"], False),
])
def test_every_st_pooling_mode_matches_sentence_transformers(pooling_mode, normalize, st_copy):
    from sentence_transformers import SentenceTransformer

    from serving.config import ModelSpec
    from serving.runner import ModelRunner
    from serving.tokenization import TextTokenizer

    directory = st_copy(pooling_mode, normalize)
    texts = ["hello world", "the film is not very good, but i like it"]
    runner = ModelRunner.load(ModelSpec(name="m", task="feature-extraction",
                                        model=str(directory),
                                        num_threads=torch.get_num_threads()).load_settings())
    params = runner.task.parameters.model_validate({})
    (rows,) = runner.run([TextTokenizer.load(str(directory)).encode(texts)])
    ours = np.array([runner.task.postprocess(row, params) for row in rows])
    theirs = SentenceTransformer(str(directory), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=EMB_ATOL)


def test_rows_of_empty_encoding():
    empty = EncodedInputs(np.array([], np.int32), np.array([], np.int32), None, 0)
    assert len(empty) == 0
    assert empty.rows() == []
