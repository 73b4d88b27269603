"""Unit tests of the configuration contract (serving.config): AppConfig and ModelSpec.

Covers a minimal valid config, the defaults, task aliases, every class of bad config
(each must fail with a pydantic ValidationError naming the offending field), the
load/batch settings split, and the shipped YAML profiles.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serving.config import AppConfig, AutoscalingSettings, ModelSpec
from serving.load_settings import LoadSettings

REPO = Path(__file__).resolve().parents[2]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _config(**model_overrides) -> dict:
    model = {"name": "m", "task": "feature-extraction", "model": MINILM, **model_overrides}
    return {"models": [model]}


def _fails(config: dict, *fragments: str) -> str:
    with pytest.raises(ValidationError) as info:
        AppConfig.model_validate(config)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_minimal_config_and_defaults():
    config = AppConfig.model_validate(_config())
    spec = config.models[0]
    assert spec.name == "m" and spec.task == "feature-extraction" and spec.model == MINILM
    assert spec.device == "auto" and spec.dtype == "auto" and spec.revision is None
    assert spec.pooling == "auto" and spec.normalize is None
    assert spec.max_batch_size == 32
    assert spec.batch_wait_timeout_s == pytest.approx(0.005, abs=1e-12)
    assert spec.max_inputs_per_request == 256
    assert spec.num_replicas == 1 and spec.autoscaling is None
    assert spec.trust_remote_code is False
    assert config.ingress.max_body_bytes == 2 * 1024 * 1024
    assert config.model("m") is spec
    assert config.model("missing") is None


def test_local_directory_model(model_dirs):
    config = AppConfig.model_validate(_config(model=str(model_dirs["sst2"]),
                                              task="text-classification"))
    assert config.models[0].model == str(model_dirs["sst2"])


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("sentiment-analysis", "text-classification"), ("embeddings", "feature-extraction"),
     ("text-classification", "text-classification")],
)
def test_task_aliases(alias, canonical):
    assert AppConfig.model_validate(_config(task=alias)).models[0].task == canonical


def test_unknown_task():
    _fails(_config(task="text-to-audio"), "models.0.task", "text-to-audio")


def test_missing_local_directory():
    _fails(_config(model="/nonexistent/dir"), "models.0.model", "does not exist")


def test_directory_without_config_json(tmp_path):
    _fails(_config(model=str(tmp_path)), "models.0.model", "config.json")


def test_malformed_hub_id():
    _fails(_config(model="not a hub id!"), "models.0.model")


def test_duplicate_names():
    model = _config()["models"][0]
    _fails({"models": [model, dict(model)]}, "models", "duplicate model name 'm'")


@pytest.mark.parametrize("name", ["a b", "../x", "", "-lead", "x/y", "a" * 65])
def test_name_must_be_url_safe(name):
    _fails(_config(name=name), "models.0.name")


def test_unknown_extra_key_on_model():
    _fails(_config(batch_size=8), "models.0.batch_size", "Extra inputs are not permitted")


def test_unknown_extra_key_on_app_and_ingress():
    _fails({**_config(), "extra": 1}, "extra")
    _fails({**_config(), "ingress": {"port": 1}}, "ingress.port")


def test_empty_models():
    _fails({"models": []}, "models")


def test_autoscaling_max_below_min():
    _fails(_config(autoscaling={"min_replicas": 3, "max_replicas": 2}),
           "models.0.autoscaling", "max_replicas must be >= min_replicas")
    ok = AutoscalingSettings(min_replicas=2, max_replicas=2)
    assert ok.max_replicas == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_batch_size", 0), ("batch_wait_timeout_s", -1), ("device", "tpu"),
     ("dtype", "int8"), ("pooling", "sum"), ("max_input_tokens", 0)],
)
def test_out_of_range_fields(field, value):
    _fails(_config(**{field: value}), f"models.0.{field}")


def test_specs_are_frozen():
    spec = AppConfig.model_validate(_config()).models[0]
    with pytest.raises(ValidationError):
        spec.max_batch_size = 4


def test_load_settings_excludes_batching():
    spec = ModelSpec.model_validate(_config(max_batch_size=8, batch_wait_timeout_s=0.1,
                                            num_cpus=2.6)["models"][0])
    settings = spec.load_settings()
    assert type(settings) is LoadSettings
    assert set(LoadSettings.model_fields) == {
        "name", "task", "model", "revision", "device", "dtype", "max_input_tokens",
        "trust_remote_code", "pooling", "normalize", "num_threads", "quantize",
        "colocate_tokenizer", "compile", "engine", "generation"}
    assert not hasattr(settings, "max_batch_size")
    assert not hasattr(settings, "batch_wait_timeout_s")
    assert settings.num_threads == 3  # max(1, round(num_cpus))
    assert settings.model == MINILM and settings.task == "feature-extraction"
    with pytest.raises(ValidationError):  # frozen: what a replica loads cannot drift
        settings.num_threads = 1


@pytest.mark.parametrize(("num_cpus", "num_threads", "expected"),
                         [(0.25, None, 1), (1, None, 1), (4, None, 4), (0.25, 6, 6)])
def test_load_settings_num_threads(num_cpus, num_threads, expected):
    spec = ModelSpec.model_validate(
        _config(num_cpus=num_cpus, num_threads=num_threads)["models"][0])
    assert spec.load_settings().num_threads == expected


def test_batch_settings():
    spec = ModelSpec.model_validate(
        _config(max_batch_size=8, batch_wait_timeout_s=0.25)["models"][0])
    assert spec.batch_settings() == {
        "max_batch_size": 8, "batch_wait_timeout_s": 0.25, "length_buckets": True
    }


def _yaml_profiles() -> list[Path]:
    return [REPO / "serve_config.yaml", *sorted((REPO / "configs").glob("*.y*ml"))]


@pytest.mark.parametrize("path", _yaml_profiles(), ids=lambda p: p.name)
def test_shipped_yaml_profiles_validate(path):
    document = yaml.safe_load(path.read_text())
    applications = document.get("applications") or []
    assert applications, f"{path} has no applications"
    for application in applications:
        assert application["import_path"] == "graphs.app:build_app"
        config = AppConfig.model_validate(application.get("args") or {})
        assert config.models


def test_custom_resources_reach_the_model_replicas():
    from graphs.app import _model_options

    spec = ModelSpec.model_validate(_config(resources={"model_node": 1, "accel": 0.5})["models"][0])
    options = _model_options(spec)["ray_actor_options"]
    assert options["resources"] == {"model_node": 1, "accel": 0.5}
    assert ModelSpec.model_validate(_config()["models"][0]).resources == {}


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [({"CPU": 1}, "use num_cpus / num_gpus"), ({"GPU": 1}, "use num_cpus / num_gpus"),
     ({"": 1}, "use num_cpus / num_gpus"), ({"model_node": 0}, "must be > 0"),
     ({"model_node": -1}, "must be > 0"), ({"model_node": "many"}, "valid number")],
)
def test_bad_custom_resources(resources, fragment):
    _fails(_config(resources=resources), "models.0.resources", fragment)


def test_rolling_updates_start_replacements_before_stopping_the_old_replicas():
    # Ray's default (0) stops a one-replica deployment's replica before its replacement
    # has loaded: requests then wait for a model with no replica (issue 7's model change).
    from graphs.app import build_app

    ingress = build_app(AppConfig.model_validate(_config()))._bound_deployment
    pipelines = ingress.init_args[0]
    deployments = [ingress] + [step._bound_deployment for pipeline in pipelines.values()
                               for step in pipeline.values()]
    assert {d.name for d in deployments} == {"Ingress", "m-tokenizer", "m-model"}
    assert all(d._deployment_config.max_surge_percent > 0 for d in deployments)


@pytest.mark.parametrize("settings,message", [
    ({"num_replicas": 2}, "set ingress.num_replicas"),
    ({"autoscaling": {"max_replicas": 4}}, "set ingress.num_replicas"),
    ({"task": "text-generation"}, "not pools or models that generate text"),
])
def test_an_in_ingress_model_has_the_ingress_replicas(settings, message):
    with pytest.raises(ValidationError, match=message):
        AppConfig.model_validate(_config(in_ingress=True, **settings))
    assert AppConfig.model_validate(_config(in_ingress=True)).models[0].in_ingress
