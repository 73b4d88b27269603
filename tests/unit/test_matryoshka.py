"""``dimensions`` only for models configured as Matryoshka-trained (serving.matryoshka),
and the config field that says so (``ModelSpec.matryoshka_dimensions``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.config import ModelSpec
from serving.errors import InvalidInputError
from serving.matryoshka import check_dimensions, check_request_dimensions
from serving.tasks.embedding_views import TextRankingParameters
from serving.tasks.feature_extraction import FeatureExtractionParameters

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _spec(**fields) -> ModelSpec:
    return ModelSpec(name="m", task="feature-extraction", model=MINILM, **fields)


def test_no_dimensions_is_always_fine():
    check_dimensions(None, _spec(), "dimensions")
    check_request_dimensions(FeatureExtractionParameters(), _spec())
    check_request_dimensions(TextRankingParameters(), _spec())  # a view: no such parameter


@pytest.mark.parametrize("where", ["dimensions", "parameters.dimensions"])
def test_refused_for_a_model_not_configured_as_matryoshka(where):
    assert _spec().matryoshka_dimensions is None  # nothing detected: config only
    with pytest.raises(InvalidInputError) as info:
        check_dimensions(64, _spec(), where)
    message = info.value.message
    assert message.startswith(f"{where}: ") and "'m'" in message
    assert "matryoshka_dimensions" in message


def test_inference_api_parameters_name_their_field():
    with pytest.raises(InvalidInputError, match=r"^parameters\.dimensions: .*matryoshka"):
        check_request_dimensions(FeatureExtractionParameters(dimensions=8), _spec())


@pytest.mark.parametrize(("dimensions", "accepted"), [
    (32, False), (63, False), (64, True), (100, True), (256, True), (384, True), (4096, True),
])
def test_any_size_from_the_smallest_trained_one(dimensions, accepted):
    """Sizes between the trained ones are accepted; more than the model has is refused
    once its vectors are known (not here)."""
    spec = _spec(matryoshka_dimensions=[384, 256, 128, 64])
    if accepted:
        check_dimensions(dimensions, spec, "dimensions")
        return
    with pytest.raises(InvalidInputError, match=r"^dimensions: .* smallest .*\(64"):
        check_dimensions(dimensions, spec, "dimensions")


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"matryoshka_dimensions": []}, "matryoshka_dimensions"),
    ({"matryoshka_dimensions": [0, 64]}, "at least 1"),
    ({"matryoshka_dimensions": ["many"]}, "matryoshka_dimensions"),
    ({"task": "text-classification", "matryoshka_dimensions": [8]}, "feature-extraction"),
])
def test_bad_config_is_refused(fields, fragment):
    with pytest.raises(ValidationError, match=fragment):
        ModelSpec.model_validate({"name": "m", "task": "feature-extraction", "model": MINILM,
                                  **fields})
