"""SPLADE sparse embeddings equal sentence-transformers' ``SparseEncoder.encode`` (both
engines, padded batches, both saved layouts), what is not reproduced is refused at load,
and token embeddings (TEI's ``/embed_all``) equal ``transformers.pipeline``'s."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.models import SpladePooling, Transformer
from transformers import pipeline

from serving.config import ModelSpec
from serving.errors import InvalidInputError
from serving.openai_compat import embeddings_response
from serving.runner import ModelRunner
from serving.schemas.openai import EmbeddingsRequest
from serving.sparse import SparseVector, is_sparse_answer, splade_config
from serving.tasks import TaskInputs
from serving.tokenization import TextTokenizer

TEXTS = ["I love this movie!", "terrible", "the film is not very good, but I like it a lot",
         "Ray Serve batches requests for me.", "the weather in Paris is sunny today " * 5]
SPARSE_ATOL = 1e-4  # the tolerance against SparseEncoder.encode
TOKEN_ATOL = 1e-5


def _runner(model: str, **spec) -> ModelRunner:
    return ModelRunner.load(ModelSpec(name="m", task="feature-extraction", model=model,
                                      num_threads=torch.get_num_threads(),
                                      **spec).load_settings())


def _answers(runner: ModelRunner, model: str, texts: list[str], **parameters) -> list:
    """What the ingress answers (rows → postprocess → format), every text in one batch."""
    task = runner.task
    params = task.parameters.model_validate(parameters)
    encoded = TextTokenizer.load(model).encode(texts, truncate=True)
    mode = task.forward_mode(params)
    (rows,) = runner.run([encoded], modes=[mode] if mode else None)
    answers = task.postprocess_request(rows, params, "texts")
    return task.format(answers, TaskInputs(texts, None, single=False), params)


def _dense(entries: list[dict], size: int) -> np.ndarray:
    vector = np.zeros(size, dtype=np.float32)
    for entry in entries:
        vector[entry["index"]] = entry["value"]
    return vector


def _reference(model: str, texts: list[str]) -> np.ndarray:
    encoder = SparseEncoder(model, device="cpu")
    return encoder.encode(texts, convert_to_tensor=True).to_dense().numpy()


def _assert_matches(answers: list, reference: np.ndarray) -> None:
    assert len(answers) == len(reference)
    for entries, expected in zip(answers, reference, strict=True):
        indices = [entry["index"] for entry in entries]
        assert indices == sorted(indices)  # TEI's order
        assert all(entry["value"] != 0 for entry in entries)
        np.testing.assert_allclose(_dense(entries, expected.size), expected, rtol=0,
                                   atol=SPARSE_ATOL)


@pytest.mark.parametrize("engine", ["torch", "onnx", "openvino"])
def test_splade_matches_sparse_encoder(model_dirs, engine):
    model = str(model_dirs["splade"])
    runner = _runner(model, engine=engine)
    assert runner.engine.name == engine  # the export really serves it (no fallback)
    assert type(runner.engine.model).__name__ == "BertForMaskedLM"
    reference = _reference(model, TEXTS)
    assert (reference > 0).sum() > 10  # the tiny model's vectors are not all zeros
    _assert_matches(_answers(runner, model, TEXTS), reference)
    for text, expected in zip(TEXTS[:2], reference, strict=False):  # alone: no padding
        _assert_matches(_answers(runner, model, [text]), expected[None])


def test_new_layout_sum_pooling_log1p_relu_and_max_active_dims(model_dirs, tmp_path):
    """sentence-transformers 6's layout (Transformer with transformer_task fill-mask), the
    other SpladePooling settings and the config's max_active_dims."""
    masked = model_dirs["splade"].with_name(model_dirs["splade"].name + "-mlm")
    encoder = SparseEncoder(
        modules=[Transformer(str(masked), transformer_task="fill-mask"),
                 SpladePooling("sum", activation_function="log1p_relu")],
        device="cpu", max_active_dims=7)
    encoder.save(str(tmp_path / "splade"))
    model = str(tmp_path / "splade")
    config = splade_config(model)
    assert (config.pooling_strategy, config.activation, config.max_active_dims) == (
        "sum", "log1p_relu", 7)
    answers = _answers(_runner(model), model, TEXTS)
    _assert_matches(answers, _reference(model, TEXTS))
    assert max(len(entries) for entries in answers) == 7


def test_dense_models_are_not_sparse(model_dirs):
    assert splade_config(str(model_dirs["st"])) is None
    assert splade_config(str(model_dirs["encoder"])) is None
    assert _runner(str(model_dirs["st"])).task.splade is None


def _edited(source, directory, edit) -> str:
    shutil.copytree(source, directory)
    modules = json.loads((directory / "modules.json").read_text())
    (directory / "modules.json").write_text(json.dumps(edit(modules)))
    return str(directory)


@pytest.mark.parametrize(("edit", "named"), [
    (lambda m: [{**m[0], "type": "sentence_transformers.sparse_encoder.models.Router"}],
     "sentence_transformers.sparse_encoder.models.Router"),
    (lambda m: [*m, {"idx": 2, "name": "2", "path": "2_SparseAutoEncoder",
                     "type": "sentence_transformers.sparse_encoder.models.SparseAutoEncoder"}],
     "sentence_transformers.sparse_encoder.models.SparseAutoEncoder"),
    (lambda m: [{**m[0], "type": "sentence_transformers.sparse_encoder.models."
                 "SparseStaticEmbedding", "path": "0_SparseStaticEmbedding"}, m[1]],
     "SparseStaticEmbedding"),
    (lambda m: m[:1], "needs one SpladePooling"),
])
def test_what_is_not_reproduced_is_refused_at_load(model_dirs, tmp_path, edit, named):
    model = _edited(model_dirs["splade"], tmp_path / "sparse", edit)
    with pytest.raises(ValueError, match=named):
        splade_config(model)
    with pytest.raises(ValueError, match=named):
        _runner(model)


def test_unknown_pooling_settings_are_refused(model_dirs, tmp_path):
    model = tmp_path / "sparse"
    shutil.copytree(model_dirs["splade"], model)
    (model / "1_SpladePooling" / "config.json").write_text(
        json.dumps({"pooling_strategy": "mean", "activation_function": "relu"}))
    with pytest.raises(ValueError, match="'mean'"):
        splade_config(str(model))


def test_normalize_false_gives_the_dense_vector(model_dirs):
    model = str(model_dirs["splade"])
    dense = _answers(_runner(model), model, TEXTS, normalize=False)
    np.testing.assert_allclose(np.stack(dense), _reference(model, TEXTS), rtol=0,
                               atol=SPARSE_ATOL)


@pytest.mark.parametrize(("parameters", "message"), [
    ({"normalize": True}, "normalize is not available for SPLADE"),
    ({"token_embeddings": True}, "token embeddings"),
    ({"dimensions": 8}, "dimensions is not available"),
])
def test_splade_refuses_what_tei_refuses(model_dirs, parameters, message):
    task = _runner(str(model_dirs["splade"])).task
    with pytest.raises(InvalidInputError, match=message):
        task.forward_mode(task.parameters.model_validate(parameters))


def test_openai_embeddings_refuse_sparse_answers():
    vector = SparseVector(np.array([3], dtype=np.int32), np.array([0.5], np.float32), 10)
    request = EmbeddingsRequest(model="splade", input="hello")
    for answers in ([vector], [vector.entries()]):
        assert is_sparse_answer(answers)
        with pytest.raises(InvalidInputError, match="sparse"):
            embeddings_response(answers, 1, request)
    assert not is_sparse_answer([np.ones(3, np.float32)])


@pytest.mark.parametrize(("key", "engine"), [("st", "torch"), ("st", "onnx"),
                                              ("encoder", "torch")])
def test_token_embeddings_match_the_pipeline(model_dirs, key, engine):
    """A sentence embedding model's token embeddings (TEI's /embed_all) are the pipeline's
    ``last_hidden_state`` rows, special tokens included, padding cut off."""
    model = str(model_dirs[key])
    reference = pipeline("feature-extraction", model=model, device="cpu")
    runner = _runner(model, engine=engine)
    texts = TEXTS[:4]  # within both windows (the sentence-transformers config's is smaller)
    answers = _answers(runner, model, texts, token_embeddings=True)
    for answer, text in zip(answers, texts, strict=True):
        expected = np.asarray(reference(text, truncation=True))
        assert answer.shape == expected.shape  # [1, tokens, dim]
        np.testing.assert_allclose(answer, expected, rtol=0, atol=TOKEN_ATOL)


def test_modes_share_a_batch_in_separate_passes(model_dirs):
    """One batch of requests asking pooled and token embeddings: each gets its own."""
    model = str(model_dirs["st"])
    runner = _runner(model)
    tokenizer = TextTokenizer.load(model)
    pooled, tokens = tokenizer.encode(TEXTS[:2]), tokenizer.encode(TEXTS[2:4])
    before = runner.stats.batches
    first, second = runner.run([pooled, tokens], modes=["", "tokens"])
    assert runner.stats.batches == before + 1
    assert [row.ndim for row in first] == [1, 1] and [row.ndim for row in second] == [2, 2]
    (alone,) = runner.run([tokens], modes=["tokens"])
    for mine, ref in zip(second, alone, strict=True):
        np.testing.assert_allclose(mine, ref, rtol=0, atol=TOKEN_ATOL)
    (vectors,) = runner.run([pooled])
    np.testing.assert_allclose(np.stack(first), np.stack(vectors), rtol=0, atol=TOKEN_ATOL)


def test_token_embeddings_are_their_own_batch_key():
    from serving.tasks.feature_extraction import FeatureExtractionParameters

    plain, tokens = FeatureExtractionParameters(), FeatureExtractionParameters(
        token_embeddings=True)
    assert plain.batch_key() != tokens.batch_key()


def test_tei_routes_by_pooling():
    from serving import tei
    from serving.errors import WrongModelKindError
    from serving.schemas.tei import TeiEmbedAllRequest, TeiEmbedSparseRequest

    splade, dense, tokens = {"pooling": "splade"}, {"pooling": "mean"}, {}
    assert tei.answers_pooling("embed_sparse", splade)
    assert not tei.answers_pooling("embed_sparse", dense)
    assert tei.answers_pooling("embed_all", dense) and tei.answers_pooling("embed_all", tokens)
    assert not tei.answers_pooling("embed_all", splade)
    assert tei.answers_pooling("embed", splade)  # /embed: the replica decides (normalize)
    with pytest.raises(WrongModelKindError, match="SPLADE pooling"):
        tei.check_pooling("embed_sparse", "tiny-st", dense)
    with pytest.raises(WrongModelKindError, match="/embed_all is not available for SPLADE"):
        tei.check_pooling("embed_all", "tiny-splade", splade)
    sparse = tei.embed_sparse_request(TeiEmbedSparseRequest(inputs="hi", truncate=False))
    assert (sparse.inputs, sparse.parameters) == (["hi"], {"truncation": False})
    every = tei.embed_all_request(TeiEmbedAllRequest(inputs=["a", "b"]))
    assert every.parameters == {"token_embeddings": True}
    rows = tei.embed_all_answer([np.ones((1, 3, 2)), np.ones((1, 5, 2))])
    assert [row.shape for row in rows] == [(3, 2), (5, 2)]
