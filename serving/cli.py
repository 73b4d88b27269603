"""``transformers-serve`` (or ``python -m serving.cli``): what ``serve`` does not do.

``tasks`` lists the tasks the server accepts, ``validate`` checks configs offline,
``prefetch`` downloads their Hub models into the local cache, ``bench`` runs the benchmark.
Imports neither Ray nor FastAPI; ``huggingface_hub`` only where a command needs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from serving.config import AppConfig, ModelSpec
from serving.models import EMBEDDED_MODELS, is_local_path
from serving.tasks import ALIASES, TASKS
from serving.tasks.embedding_views import VIEWS

ROOT = Path(__file__).resolve().parents[1]
BUILD_APP = "graphs.app:build_app"
# What the server never reads (it loads safetensors weights only): other frameworks' weights.
IGNORED_FILES = ["*.bin", "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite",
                 "*.gguf", "*.pt", "*.pth", "*.ckpt", "*.mlmodel", "onnx/*", "openvino/*",
                 "coreml/*"]


class ConfigFileError(Exception):
    """A config file that cannot be read as a Serve config or an AppConfig."""


@dataclass(frozen=True)
class App:
    """One application's ``args`` from a config file; ``where`` locates them in the file."""

    where: str
    args: object


# --- tasks ----------------------------------------------------------------------------


def _answers(task: type) -> str:
    """First sentence of the task's docstring (its module's for model tasks), as one line."""
    doc = task.__doc__ if task in VIEWS.values() else sys.modules[task.__module__].__doc__
    text = " ".join((doc or "").split("\n\n")[0].split()).replace("``", "")
    text = re.sub(r"^[\w\s(),-]+?: ", "", text, count=1) if task in TASKS.values() else text
    return re.split(r"(?<=\.) ", text, maxsplit=1)[0].rstrip(".")


def task_table() -> list[dict]:
    """Every task the server accepts, from the registry: model tasks, then views."""
    rows = [{"task": name, "kind": "model", "model_class": task.model_class,
             "aliases": sorted(a for a, target in ALIASES.items() if target == name),
             "parameters": sorted(task.parameters.model_fields), "answers": _answers(task)}
            for name, task in TASKS.items()]
    rows += [{"task": name, "kind": "view", "model_class": "(its feature-extraction model)",
              "aliases": [], "parameters": sorted(task.parameters.model_fields),
              "answers": _answers(task)} for name, task in VIEWS.items()]
    return rows


def _tasks(options: argparse.Namespace) -> int:
    rows = task_table()
    if options.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("TASK", "ALIASES", "MODEL CLASS", "ANSWERS")]
    for kind in ("model", "view"):
        table += [(row["task"] + (" (view)" if kind == "view" else ""),
                   ", ".join(row["aliases"]) or "-", row["model_class"], row["answers"])
                  for row in rows if row["kind"] == kind]
    _print_table(table)
    print("\nViews are declared under a feature-extraction model (views: [{name, task}]).")
    return 0


# --- configs --------------------------------------------------------------------------


def load_apps(path: Path) -> list[App]:
    """The ``graphs.app:build_app`` applications of a Serve config, or a bare AppConfig.

    Raises:
        ConfigFileError: the file is missing, not YAML, or holds no such application.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigFileError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    if "applications" not in data:
        return [App("", data)]
    apps = [App(f"applications.{i}.args", app.get("args", {}))
            for i, app in enumerate(data["applications"] or [])
            if isinstance(app, dict) and app.get("import_path") == BUILD_APP]
    if not apps:
        raise ConfigFileError(f"{path}: no application with import_path {BUILD_APP}")
    return apps


def validate_app(app: App) -> tuple[AppConfig | None, list[str]]:
    """The validated config, or None and one ``field: message`` line per pydantic error."""
    try:
        return AppConfig.model_validate(app.args), []
    except ValidationError as error:
        return None, [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}"
                      for e in error.errors()]


def _source(spec: ModelSpec) -> str:
    if spec.model in EMBEDDED_MODELS:
        return "embedded"
    return "local" if is_local_path(spec.model) else "hub"


def _is_cached(repo: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)


def _summary(config: AppConfig) -> None:
    table = [("NAME", "TASK", "MODEL", "SOURCE", "REPLICAS", "CPUS", "GPUS", "BATCH", "WAIT")]
    ingress = config.ingress
    cpus = [ingress.num_replicas * ingress.num_cpus] * 2  # in all, at min and max replicas
    gpus = [0.0, 0.0]
    for spec in config.models:
        scaling = spec.autoscaling
        replicas = (spec.num_replicas,) * 2 if scaling is None else (
            scaling.min_replicas, scaling.max_replicas)
        tokenizer = 0 if spec.colocate_tokenizer else (
            spec.tokenizer_replicas * spec.tokenizer_num_cpus)
        for i in (0, 1):
            cpus[i] += replicas[i] * spec.num_cpus + tokenizer
            gpus[i] += replicas[i] * spec.num_gpus
        model = spec.model + (f"@{spec.revision}" if spec.revision else "")
        table.append((spec.name, spec.task, model, _source(spec),
                      str(replicas[0]) if scaling is None else "{}-{}".format(*replicas),
                      f"{spec.num_cpus:g}", f"{spec.num_gpus:g}", str(spec.max_batch_size),
                      f"{spec.batch_wait_timeout_s * 1000:g} ms"))
        table += [(f"  {view.name}", view.task, f"(view of {spec.name})", "", "", "", "", "", "")
                  for view in spec.views]
    _print_table(table, indent="  ")
    total = f"{cpus[0]:g} CPUs, {gpus[0]:g} GPUs"
    if cpus != cpus[::-1] or gpus != gpus[::-1]:
        total = f"{cpus[0]:g}-{cpus[1]:g} CPUs, {gpus[0]:g}-{gpus[1]:g} GPUs (autoscaling)"
    print(f"  ingress: {ingress.num_replicas} x {ingress.num_cpus:g} CPU; "
          f"reserved in all (models, tokenizers, ingress): {total}")


def _offline_checks(config: AppConfig) -> tuple[list[str], list[str]]:
    """(errors, Hub ids missing from the local cache) that need no network."""
    errors, missing = [], []
    for spec in config.models:
        package = EMBEDDED_MODELS.get(spec.model)
        if package and importlib.util.find_spec(package) is None:
            errors.append(f"{spec.name}: {spec.model} needs the {package} package, not installed")
        if _source(spec) == "hub" and not _is_cached(spec.model, spec.revision):
            missing.append(spec.model + (f"@{spec.revision}" if spec.revision else ""))
    return errors, missing


def _validate(options: argparse.Namespace) -> int:
    from huggingface_hub import constants

    failed = False
    for path in options.configs:
        try:
            apps = load_apps(path)
        except ConfigFileError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        for app in apps:
            label = f"{path}" + (f" ({app.where})" if app.where else "")
            config, problems = validate_app(app)
            if config is None:
                print(f"{label}: INVALID", file=sys.stderr)
                print("\n".join(f"  {line}" for line in problems), file=sys.stderr)
                failed = True
                continue
            errors, missing = _offline_checks(config)
            if missing:
                line = (f"not in the local Hub cache ({constants.HF_HUB_CACHE}): "
                        f"{', '.join(missing)}; fetch with: transformers-serve prefetch {path}")
                errors += [line] if options.strict else []
            print(f"{label}: {'INVALID' if errors else 'OK'}, {len(config.models)} model(s)")
            _summary(config)
            if missing and not options.strict:
                print(f"  warning: {line}")
            for line in errors:
                print(f"  error: {line}", file=sys.stderr)
            failed = failed or bool(errors)
    return 1 if failed else 0


# --- prefetch -------------------------------------------------------------------------


def _plan(paths: list[Path]) -> tuple[dict[tuple[str, str | None], list[str]], list[str]]:
    """({(Hub id, revision): model names}, skipped lines); ConfigFileError if invalid."""
    fetch: dict[tuple[str, str | None], list[str]] = {}
    skipped = []
    for path in paths:
        for app in load_apps(path):
            config, problems = validate_app(app)
            if config is None:
                raise ConfigFileError(f"{path}: invalid, run: transformers-serve validate {path}"
                                      + "".join(f"\n  {line}" for line in problems))
            for spec in config.models:
                source = _source(spec)
                if source == "hub":
                    fetch.setdefault((spec.model, spec.revision), []).append(spec.name)
                elif source == "embedded":
                    skipped.append(f"{spec.name}: {spec.model} is embedded "
                                   f"(ships in the {EMBEDDED_MODELS[spec.model]} package)")
                else:
                    skipped.append(f"{spec.name}: {spec.model} is a local directory")
    return fetch, skipped


def _prefetch(options: argparse.Namespace) -> int:
    try:
        plan, skipped = _plan(options.configs)
    except ConfigFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = "every file" if options.all_files else "safetensors weights, configs, tokenizer"
    verb = "would fetch" if options.dry_run else "will fetch"
    print(f"{verb} {len(plan)} Hub model(s) into {constants.HF_HUB_CACHE} ({what}):")
    for (repo, revision), names in plan.items():
        cached = "  [cached]" if _is_cached(repo, revision) else ""
        print(f"  {repo}@{revision or 'main'}  (model {', '.join(names)}){cached}")
    if skipped:
        print("skipped (nothing to download):")
        print("\n".join(f"  {line}" for line in dict.fromkeys(skipped)))
    if options.dry_run:
        return 0
    failures = []
    for (repo, revision), _ in plan.items():
        print(f"fetching {repo}@{revision or 'main'}", flush=True)
        try:
            path = snapshot_download(
                repo, revision=revision, etag_timeout=options.timeout,
                ignore_patterns=None if options.all_files else IGNORED_FILES)
        except LocalEntryNotFoundError as error:
            if constants.HF_HUB_OFFLINE:
                failures.append(f"{repo}: not in the cache and HF_HUB_OFFLINE=1 is set "
                                "(unset it to download)")
                continue
            print(f"error: cannot reach the Hugging Face Hub at {constants.ENDPOINT} to fetch "
                  f"{repo} ({str(error).splitlines()[0].removeprefix('Got: ')}). Check the "
                  "network, HF_ENDPOINT or the proxy settings; or prefetch on a machine with "
                  f"access and copy {constants.HF_HUB_CACHE} over.", file=sys.stderr)
            return 1
        except Exception as error:  # unknown or gated repo, bad revision, disk full...
            failures.append(f"{repo}: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        if not any(Path(path).rglob("*.safetensors")):
            print(f"  warning: {repo} has no .safetensors weights; the server loads only those",
                  file=sys.stderr)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    print(f"fetched {len(plan) - len(failures)} of {len(plan)} model(s)")
    return 1 if failures else 0


# --- bench ----------------------------------------------------------------------------


def bench_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment running ``python -m bench ARGS`` from any directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "bench", *args], env


def _bench(args: list[str]) -> int:
    if not (ROOT / "bench" / "__main__.py").is_file():
        print(f"error: the benchmark ships in the source checkout only (no {ROOT / 'bench'})",
              file=sys.stderr)
        return 1
    command, env = bench_command(args)
    return subprocess.call(command, env=env)


# --- entry point ----------------------------------------------------------------------


def _print_table(rows: Sequence[tuple[str, ...]], indent: str = "") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print(indent + "  ".join([*cells, row[-1]]).rstrip())


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (``bench`` arguments are forwarded untouched)."""
    cli = argparse.ArgumentParser(
        prog="transformers-serve",
        description="What `serve` does not do: list the tasks, validate configs, pre-fetch "
        "their Hub models, run the benchmark.")
    commands = cli.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tasks = commands.add_parser("tasks", help="list the tasks the server accepts")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")
    validate = commands.add_parser(
        "validate", help="validate Serve configs or AppConfig YAMLs offline (exit 1 if invalid)")
    validate.add_argument("configs", nargs="+", type=Path, metavar="CONFIG")
    validate.add_argument("--strict", action="store_true",
                          help="Hub models missing from the local cache are errors")
    prefetch = commands.add_parser(
        "prefetch", help="download the configs' Hub models into the local Hugging Face cache")
    prefetch.add_argument("configs", nargs="+", type=Path, metavar="CONFIG")
    prefetch.add_argument("--dry-run", action="store_true", help="list what would be fetched")
    prefetch.add_argument("--all-files", action="store_true",
                          help="every file of each repo, not only what the server loads")
    prefetch.add_argument("--timeout", type=float, default=10,
                          help="seconds to wait for the Hub's first answer (default 10)")
    commands.add_parser("bench", add_help=False,
                        help="run the benchmark: python -m bench ARGS (bench --help lists them)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after `bench` belongs to `python -m bench`
        return _bench(argv[1:])
    options = parser().parse_args(argv)
    command = {"tasks": _tasks, "validate": _validate, "prefetch": _prefetch}[options.command]
    try:
        return command(options)
    except BrokenPipeError:  # e.g. `transformers-serve tasks --json | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silences the flush at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
