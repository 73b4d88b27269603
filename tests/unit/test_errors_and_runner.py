"""Unit tests of serving.errors (status table, bodies, pickling, validation messages),
the device/dtype choice of serving.runner, and model references in serving.models."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving import errors
from serving.engines.torch_engine import select_device, select_dtype
from serving.errors import describe_validation_errors, status_code_for
from serving.models import (
    EMBEDDED_MODELS,
    check_model_reference,
    is_local_path,
    read_json,
    resolve_model_source,
)
from serving.tasks.text_classification import TextClassificationParameters

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

ERRORS = [
    (errors.InvalidInputError, 422, "validation"),
    (errors.InputTooLongError, 422, "input_too_long"),
    (errors.WrongModelKindError, 422, "wrong_model_kind"),
    (errors.ModelNotFoundError, 404, "not_found"),
    (errors.PayloadTooLargeError, 413, "payload_too_large"),
    (errors.OverloadedError, 429, "overloaded"),
    (errors.UnavailableError, 503, "unhealthy"),
    (errors.RequestTimeoutError, 504, "timeout"),
    (errors.BackendError, 500, "backend"),
    (errors.ServingError, 500, "internal"),
]


@pytest.mark.parametrize(("cls", "status", "error_type"), ERRORS)
def test_status_code_and_body(cls, status, error_type):
    error = cls("something went wrong")
    assert status_code_for(error) == status
    assert error.to_body() == {"error": "something went wrong", "error_type": error_type}
    assert str(error) == error.message == "something went wrong"
    assert isinstance(error, errors.ServingError)


@pytest.mark.parametrize(("cls", "status", "error_type"), ERRORS)
def test_pickling_keeps_type_and_message(cls, status, error_type):
    restored = pickle.loads(pickle.dumps(cls("inputs[3] is empty")))
    assert type(restored) is cls
    assert restored.message == str(restored) == "inputs[3] is empty"
    assert restored.to_body()["error_type"] == error_type
    assert status_code_for(restored) == status


def test_input_too_long_is_an_invalid_input():
    assert issubclass(errors.InputTooLongError, errors.InvalidInputError)


# (path, dialect): TEI's routes at the root and for a named model (a pool member included),
# OpenAI's, and the Inference API's /models/{name} (a pool member's too) and the rest.
PATHS = [
    ("/embed", "tei"), ("/embed_all", "tei"), ("/embed_sparse", "tei"), ("/rerank", "tei"),
    ("/predict", "tei"), ("/similarity", "tei"), ("/tokenize", "tei"), ("/decode", "tei"),
    ("/info", "tei"), ("/", "tei"), ("/invocations", "tei"), ("/ping", "tei"),
    ("/models/minilm/embed", "tei"), ("/models/customers/m07/predict", "tei"),
    ("/models/minilm/info", "tei"), ("/models/minilm/health", "tei"),
    ("/v1/embeddings", "openai"), ("/v1/models/minilm", "openai"), ("/embeddings", "openai"),
    ("/models/minilm", "ours"), ("/models/customers/m07", "ours"), ("/models/", "ours"),
    ("/models/embed", "ours"), ("/health", "ours"), ("/metrics", "ours"),
    ("/embed/x", "ours"), ("/pipeline/text-classification/sentiment", "ours"),
]


@pytest.mark.parametrize(("path", "dialect"), PATHS)
def test_each_route_speaks_its_dialect(path, dialect):
    assert errors.speaks_tei(path) is (dialect == "tei")
    assert errors.speaks_openai(path) is (dialect == "openai")
    status, body = errors.error_answer(errors.InvalidInputError("inputs: bad"), path)
    assert status == (400 if dialect == "openai" else 422)
    expected = {"tei": {"error": "inputs: bad", "error_type": "Validation"},
                "ours": {"error": "inputs: bad", "error_type": "validation"}}
    assert body == expected.get(dialect, {"error": {
        "message": "inputs: bad", "type": "invalid_request_error", "param": "inputs",
        "code": None}})


# TEI's error type and status per error (router/src/lib.rs ErrorType, server.rs): a model of
# the wrong kind is TEI's 424 Backend; errors TEI has no type for keep our status.
TEI_ANSWERS = [
    (errors.WrongModelKindError, 424, "Backend"),
    (errors.InvalidInputError, 422, "Validation"),
    (errors.InputTooLongError, 422, "Validation"),
    (errors.ModelNotFoundError, 404, "Validation"),
    (errors.UnauthorizedError, 401, "Validation"),
    (errors.PayloadTooLargeError, 413, "Validation"),
    (errors.OverloadedError, 429, "Overloaded"),
    (errors.UnavailableError, 503, "Unhealthy"),
    (errors.RequestTimeoutError, 504, "Backend"),
    (errors.BackendError, 500, "Backend"),
    (errors.ServingError, 500, "Backend"),
]


@pytest.mark.parametrize(("cls", "status", "error_type"), TEI_ANSWERS)
def test_tei_answers(cls, status, error_type):
    assert errors.tei_answer(cls("why")) == (status, {"error": "why", "error_type": error_type})
    assert errors.error_answer(cls("why"), "/models/x/rerank") == errors.tei_answer(cls("why"))
    assert error_type in errors.TEI_ERROR_TYPES
    # The Inference API's answer of the same error is unchanged.
    assert errors.error_answer(cls("why"), "/models/x") == (status_code_for(cls("why")),
                                                            cls("why").to_body())


def test_http_errors_without_a_serving_error_speak_the_dialect():
    assert errors.http_error_body("Method Not Allowed", 405, "method_not_allowed",
                                  "/embed") == {"error": "Method Not Allowed",
                                                "error_type": "Validation"}
    assert errors.http_error_body("Not Found", 404, "not_found", "/nope") == {
        "error": "Not Found", "error_type": "not_found"}
    assert errors.http_error_body("Not Found", 404, "not_found", "/v1/nope")["error"] == {
        "message": "Not Found", "type": "invalid_request_error", "param": None,
        "code": "not_found"}


def test_describe_real_pydantic_errors():
    with pytest.raises(ValidationError) as info:
        TextClassificationParameters.model_validate({"top_k": 0, "bogus": 1})
    text = describe_validation_errors(info.value.errors(), prefix="parameters")
    lines = text.split("; ")
    assert len(lines) == 2
    assert lines[0].startswith("parameters.top_k: ") and "greater than or equal to 1" in lines[0]
    assert lines[1].startswith("parameters.bogus: ")
    assert describe_validation_errors(info.value.errors()).startswith("top_k: ")


def test_describe_drops_body_and_joins_nested_locations():
    errs = [{"type": "missing", "loc": ("body", "inputs"), "msg": "Field required"},
            {"type": "int_parsing", "loc": ("body", "parameters", "top_k", 0), "msg": "bad"}]
    assert describe_validation_errors(errs) == (
        "inputs: Field required; parameters.top_k.0: bad")


def test_describe_without_location():
    errs = [{"type": "value_error", "loc": (), "msg": "Value error, nope"}]
    assert describe_validation_errors(errs) == "Value error, nope"
    assert describe_validation_errors(errs, prefix="args") == "args: Value error, nope"
    assert describe_validation_errors([{"type": "x", "loc": ("body",), "msg": "m"}]) == "m"


def test_describe_json_invalid():
    errs = [{"type": "json_invalid", "loc": ("body", 17), "msg": "JSON decode error",
             "ctx": {"error": "Expecting value"}}]
    assert describe_validation_errors(errs) == (
        "request body is not valid JSON (at character 17)")


@pytest.mark.parametrize(
    ("requested", "cuda", "mps", "expected"),
    [("auto", True, False, "cuda"), ("auto", False, False, "cpu"), ("auto", False, True, "cpu"),
     ("cpu", True, True, "cpu"), ("cuda", True, False, "cuda"), ("mps", False, True, "mps")],
)
def test_select_device(requested, cuda, mps, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert select_device(requested, cuda, mps) == expected
    assert not caplog.records


@pytest.mark.parametrize("requested", ["cuda", "mps"])
def test_missing_accelerator_falls_back_to_cpu(requested, caplog):
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert select_device(requested, cuda_available=False, mps_available=False) == "cpu"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and requested in warnings[0].getMessage()
    assert warnings[0].name == "serving.engines.torch_engine"


@pytest.mark.parametrize(
    ("requested", "device", "expected"),
    [("auto", "cuda", "float16"), ("auto", "cpu", "float32"), ("auto", "mps", "float32"),
     ("float32", "cuda", "float32"), ("float16", "cuda", "float16"),
     ("bfloat16", "cpu", "bfloat16"), ("float32", "cpu", "float32")],
)
def test_select_dtype(requested, device, expected):
    assert select_dtype(requested, device) == expected


def test_float16_on_cpu_becomes_float32(caplog):
    with caplog.at_level(logging.WARNING, logger="serving.engines.torch_engine"):
        assert select_dtype("float16", "cpu") == "float32"
    assert any("float16" in r.getMessage() for r in caplog.records)


def test_embedded_model_resolves_offline():
    assert MINILM in EMBEDDED_MODELS
    check_model_reference(MINILM)
    source = Path(resolve_model_source(MINILM))
    assert source.is_dir() and (source / "config.json").is_file()
    assert (source / "modules.json").is_file()


def test_local_directory(model_dirs, monkeypatch):
    directory = model_dirs["encoder"]
    check_model_reference(str(directory))
    assert resolve_model_source(str(directory)) == str(directory.resolve())
    monkeypatch.chdir(directory.parent)
    relative = f"./{directory.name}"
    assert is_local_path(relative) and is_local_path(directory.name)
    check_model_reference(relative)
    assert resolve_model_source(relative) == str(directory.resolve())


@pytest.mark.parametrize("path", ["/nonexistent/dir", "./nope", "../nope/x", "~/no-such-model-dir"])
def test_missing_local_path_rejected(path):
    with pytest.raises(ValueError, match="does not exist"):
        check_model_reference(path)


def test_directory_without_config_rejected(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        check_model_reference(str(tmp_path))


@pytest.mark.parametrize("hub_id", ["bert-base-uncased", "org/name", "org/name.v2_x-1"])
def test_well_formed_hub_ids_pass_through(hub_id):
    check_model_reference(hub_id)  # no network: only the shape is checked
    assert resolve_model_source(hub_id) == hub_id


@pytest.mark.parametrize("hub_id", ["org/name/extra", "bad id", "org//name", "-org/x", "org/",
                                    "org/na me"])
def test_malformed_hub_ids_rejected(hub_id):
    with pytest.raises(ValueError, match="neither an existing directory nor a Hub id"):
        check_model_reference(hub_id)


def test_empty_reference_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" is the current directory, which has no config.json
    with pytest.raises(ValueError):
        check_model_reference("")


def test_read_json(model_dirs):
    config = read_json(str(model_dirs["st"]), "config.json")
    assert config["hidden_size"] == 32
    assert read_json(str(model_dirs["st"]), "sentence_bert_config.json")["max_seq_length"] == 48
    assert read_json(str(model_dirs["encoder"]), "modules.json") is None


def test_int8_quantization_replaces_linear_layers_on_cpu_only(model_dirs, caplog):
    import numpy as np
    import torch
    from transformers import AutoModel

    from serving.engines.torch_engine import quantize_int8

    model = AutoModel.from_pretrained(model_dirs["encoder"]).eval()
    with caplog.at_level(logging.WARNING):
        assert quantize_int8(model, "cuda") is model
    assert "CPU-only" in caplog.text
    quantized = quantize_int8(AutoModel.from_pretrained(model_dirs["encoder"]).eval(), "cpu")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    modules = list(quantized.modules())
    assert not any(type(module) is torch.nn.Linear for module in modules)
    assert any(isinstance(module, DynamicLinear) for module in modules)
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    with torch.inference_mode():
        theirs = model(input_ids=ids).last_hidden_state.numpy()
        mine = quantized(input_ids=ids).last_hidden_state.numpy()
    cosine = (theirs * mine).sum(-1) / np.linalg.norm(theirs, axis=-1) / np.linalg.norm(
        mine, axis=-1)
    assert cosine.min() > 0.9  # close, not identical
    assert not np.array_equal(theirs, mine)


def test_lower_cpu_priority_nices_every_thread_and_later_ones():
    """Run in a child process: niceness cannot be lowered back without privileges."""
    import subprocess
    import sys

    script = """
import os, threading
from serving.runner import lower_cpu_priority
stop = threading.Event()
early = threading.Thread(target=stop.wait); early.start()
lower_cpu_priority(3)
late = threading.Thread(target=stop.wait); late.start()
print(sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')}))
stop.set()
"""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == str([base + 3])
