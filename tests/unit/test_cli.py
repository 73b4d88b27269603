"""The ``transformers-serve`` CLI (serving/cli.py, cli_configs.py, cli_prefetch.py): tasks,
validate, prefetch, bench. ``run`` is tested in test_cli_run.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving import cli, cli_configs
from serving.models import EMBEDDED_MODELS
from serving.tasks import ALIASES, TASKS
from serving.tasks.embedding_views import VIEWS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "serve_config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]
HUB = ROOT / "configs" / "hub.yaml"


def _hub_ids(path: Path) -> list[str]:
    args = yaml.safe_load(path.read_text())["applications"][0]["args"]
    return [m["model"] for m in args["models"] if m["model"] not in EMBEDDED_MODELS]


def test_importing_the_cli_loads_neither_ray_nor_fastapi():
    code = ("import sys, serving.cli; "
            "print(sorted(m for m in ('ray', 'fastapi', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tasks_lists_every_registered_task_alias_and_view(capsys):
    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out
    for task in [*TASKS, *ALIASES, *VIEWS]:
        assert task in out
    assert "AutoModelForSequenceClassification" in out and "text-ranking (view)" in out


def test_tasks_json(capsys):
    assert cli.main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    models = {row["task"]: row for row in rows if row["kind"] == "model"}
    assert set(models) == set(TASKS)
    assert {row["task"] for row in rows if row["kind"] == "view"} == set(VIEWS)
    assert models["text-classification"]["aliases"] == ["sentiment-analysis"]
    assert models["fill-mask"]["model_class"] == "AutoModelForMaskedLM"
    assert "top_k" in models["fill-mask"]["parameters"]
    assert all(row["answers"] for row in rows)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_validate_accepts_the_shipped_configs(path, capsys):
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}" in out and "OK" in out
    for model in yaml.safe_load(path.read_text())["applications"][0]["args"]["models"]:
        assert model["name"] in out and model["task"] in out


def test_validate_summary_and_missing_hub_models(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_configs, "is_cached", lambda repo, revision: False)
    assert cli.main(["validate", str(ROOT / "configs" / "gpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1-4" in out  # autoscaling replicas
    assert "5.25-8.25 CPUs, 0.5-1.25 GPUs" in out
    assert "warning: not in the local Hub cache" in out
    assert "distilbert-base-uncased-finetuned-sst-2-english" in out
    assert cli.main(["validate", "--strict", str(ROOT / "configs" / "gpu.yaml")]) == 1
    assert "error: not in the local Hub cache" in capsys.readouterr().err


def test_validate_a_bare_app_config_with_a_local_model(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump({"models": [
        {"name": "local", "task": "sentiment-analysis", "model": str(model_dir),
         "autoscaling": {"min_replicas": 1, "max_replicas": 3}}]}))
    assert cli.main(["validate", "--strict", str(path)]) == 0
    out = capsys.readouterr().out
    assert "text-classification" in out and "local" in out and "1-3" in out


def test_validate_names_the_broken_fields(tmp_path, capsys):
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["applications"][0]["args"]["models"].append(
        {"name": "bad", "task": "sentimental", "model": str(tmp_path / "missing"),
         "max_batch_size": 0})
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["validate", str(ROOT / "serve_config.yaml"), str(path)]) == 1
    err = capsys.readouterr().err
    assert "INVALID" in err
    assert "models.1.task: Value error, unknown task 'sentimental'" in err
    assert "models.1.model:" in err and "does not exist" in err
    assert "models.1.max_batch_size:" in err


def test_validate_names_serve_fields_serve_would_ignore(tmp_path, capsys):
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_option"] = config.pop("http_options")
    config["applications"][0]["arg"] = config["applications"][0].pop("args")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "http_option: unknown field (did you mean 'http_options'?)" in err
    assert "applications.0.arg: unknown field (did you mean 'args'?)" in err


@pytest.mark.parametrize("text", ["[1, 2]", "applications: [{import_path: other:app}]", ": :"])
def test_validate_rejects_files_that_are_no_config(tmp_path, capsys, text):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    assert cli.main(["validate", str(path), str(tmp_path / "absent.yaml")]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "absent.yaml" in err


def test_prefetch_dry_run_lists_hub_ids_and_skips_the_rest(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({"models": [
        {"name": "mine", "task": "fill-mask", "model": str(model_dir)},
        {"name": "pinned", "task": "text-generation", "model": "distilgpt2", "revision": "v1"}]}))
    assert cli.main(["prefetch", "--dry-run", str(HUB), str(local)]) == 0
    out = capsys.readouterr().out
    for repo in _hub_ids(HUB):
        assert f"{repo}@main" in out
    assert "distilgpt2@v1  (model pinned)" in out
    assert "skipped" in out and f"mine: {model_dir} is a local directory" in out
    assert "minilm: sentence-transformers/all-MiniLM-L6-v2 is embedded" in out
    assert "fetching" not in out


def test_prefetch_downloads_hub_models_only(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    def snapshot_download(repo, **kwargs):
        calls.append((repo, kwargs))
        (tmp_path / repo).mkdir(parents=True, exist_ok=True)
        (tmp_path / repo / "model.safetensors").write_text("")
        return str(tmp_path / repo)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert cli.main(["prefetch", str(ROOT / "configs" / "gpu.yaml")]) == 0
    assert [repo for repo, _ in calls] == ["distilbert-base-uncased-finetuned-sst-2-english"]
    kwargs = calls[0][1]
    assert kwargs["revision"] is None and "*.bin" in kwargs["ignore_patterns"]
    assert "fetched 1 of 1 model(s)" in capsys.readouterr().out
    calls.clear()
    assert cli.main(["prefetch", "--all-files", str(ROOT / "configs" / "gpu.yaml")]) == 0
    assert calls[0][1]["ignore_patterns"] is None


def _run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run([sys.executable, "-m", "serving.cli", *args], cwd=ROOT,
                          env={**environ, **env}, capture_output=True, text=True, timeout=60)


def test_prefetch_fails_fast_when_the_hub_is_unreachable(tmp_path):
    result = _run_cli(["prefetch", "--timeout", "2", str(HUB)], HF_HOME=str(tmp_path),
                      HF_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot reach the Hugging Face Hub at http://127.0.0.1:9" in result.stderr
    assert result.stdout.count("fetching ") == 1  # gave up after the first model
    assert "Traceback" not in result.stderr


def test_prefetch_offline_names_the_missing_models(tmp_path):
    result = _run_cli(["prefetch", str(ROOT / "configs" / "gpu.yaml")], HF_HOME=str(tmp_path),
                      HF_HUB_OFFLINE="1")
    assert result.returncode == 1
    assert "not in the cache and HF_HUB_OFFLINE=1 is set" in result.stderr
    assert "fetched 0 of 1 model(s)" in result.stdout


def test_bench_forwards_its_arguments(tmp_path, capfd, monkeypatch):
    command, env = cli.bench_command(["--smoke", "--duration", "1"])
    assert command == [sys.executable, "-m", "bench", "--smoke", "--duration", "1"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    monkeypatch.chdir(tmp_path)  # works from any directory
    assert cli.main(["bench", "--help"]) == 0
    assert "usage: python -m bench" in capfd.readouterr().out
