"""Configs that do not fit the machine fail at once, naming what is missing
(serving/capacity.py, ``transformers-serve run``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models
import yaml

from serving import capacity
from serving.cli_run import local_shortfalls
from serving.config import AppConfig


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def four_models(root: Path, **settings) -> AppConfig:
    return AppConfig.model_validate(tiny_models.four_model_app(root, **settings))


def test_four_default_models_do_not_fit_two_cpus_and_the_message_names_them(models_root):
    problems = capacity.shortfalls(four_models(models_root), [{"CPU": 2.0}])
    text = "\n".join(problems)
    # 4 x 1 CPU model replicas + 2 x 0.25 tokenizers + 0.25 ingress = 4.75 CPUs
    assert "in all the config reserves 4.75 CPU; the cluster has 2 CPU" in text
    # Two of the four 1-CPU replicas fit; the rest, and then nothing else, does not.
    assert [line.split(" needs ")[1].split(" per ")[0] for line in problems[:-1]] == [
        "1 CPU", "1 CPU", "0.25 CPU", "0.25 CPU", "0.25 CPU"], problems


def test_sized_down_they_fit(models_root):
    config = four_models(models_root, num_cpus=0.25)
    assert capacity.shortfalls(config, [{"CPU": 2.0}]) == []


def test_every_replica_must_fit_one_node(models_root):
    sst2 = str(tiny_models.distilbert_sst2(models_root / "sst2"))
    config = AppConfig.model_validate({"models": [
        {"name": "big", "task": "text-classification", "model": sst2,
         "num_cpus": 3, "num_gpus": 1}]})
    problems = capacity.shortfalls(config, [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 2.0}])
    assert problems[0] == "big-model needs 3 CPU, 1 GPU per replica and no node has that left"
    assert capacity.shortfalls(config, [{"CPU": 4.0, "GPU": 1.0}]) == []


def test_autoscaled_models_start_with_their_minimum(models_root):
    sst2 = str(tiny_models.distilbert_sst2(models_root / "sst2"))
    config = AppConfig.model_validate({"models": [
        {"name": "a", "task": "text-classification", "model": sst2,
         "autoscaling": {"min_replicas": 0, "max_replicas": 8}}]})
    groups = {group.deployment: group.count for group in capacity.replicas(config)}
    assert groups == {"a-model": 1, "a-tokenizer": 1, "Ingress": 1}


def _serve_config(path: Path, config: AppConfig) -> Path:
    args = config.model_dump(mode="json", exclude_unset=True)
    path.write_text(yaml.safe_dump({"applications": [
        {"name": "default", "import_path": "graphs.app:build_app", "args": args}]}))
    return path


def test_transformers_serve_run_refuses_before_ray_starts(models_root, tmp_path):
    path = _serve_config(tmp_path / "serve_config.yaml", four_models(models_root))
    cpus = os.cpu_count() or 1
    assert bool(local_shortfalls(path, {})) == (cpus < 4.75)
    assert local_shortfalls(path, {capacity.SKIP_ENV: "1"}) == []
    if cpus >= 4.75:
        pytest.skip(f"this machine has {cpus} CPUs: the config fits")
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_SERVE_ENABLE_HA_PROXY": "0"}
    result = subprocess.run([sys.executable, "-m", "serving.cli", "run", str(path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "does not fit this machine" in result.stderr
    assert "needs 1 CPU per replica" in result.stderr
    assert "model pool" in result.stderr  # the advice


def test_an_in_ingress_model_is_reserved_by_each_ingress_replica(models_root):
    sst2 = str(tiny_models.distilbert_sst2(models_root / "sst2"))
    config = AppConfig.model_validate({
        "models": [{"name": "a", "task": "text-classification", "model": sst2,
                    "in_ingress": True, "num_cpus": 0.5, "num_gpus": 0.25,
                    "resources": {"edge": 1}}],
        "ingress": {"num_replicas": 2, "num_cpus": 0.25}})
    assert [(g.deployment, g.count, g.need) for g in capacity.replicas(config)] == [
        ("Ingress", 2, {"CPU": 0.75, "GPU": 0.25, "edge": 1})]
    assert capacity.shortfalls(config, [{"CPU": 2.0, "GPU": 1.0, "edge": 2}]) == []
    assert capacity.shortfalls(config, [{"CPU": 1.0, "GPU": 1.0, "edge": 2}])
