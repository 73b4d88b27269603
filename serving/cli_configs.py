"""Reading and checking config files for the CLI (serving/cli.py): ``validate``, and the
check ``run`` does before it starts anything.

Imports neither Ray nor FastAPI at import time: Serve's own schema is imported by
:func:`serve_errors` only, ``huggingface_hub`` only where the Hub cache is looked at.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from serving.config import AppConfig, ModelSpec
from serving.models import EMBEDDED_MODELS, is_local_path

BUILD_APP = "graphs.app:build_app"


class ConfigFileError(Exception):
    """A config file that cannot be read as a Serve config or an AppConfig."""


@dataclass(frozen=True)
class App:
    """One application's ``args`` from a config file; ``where`` locates them in the file."""

    where: str
    args: object


def read_config(path: Path) -> dict:
    """The YAML mapping in ``path``.

    Raises:
        ConfigFileError: the file is missing, not YAML, or not a mapping.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigFileError(f"{path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def load_apps(path: Path) -> list[App]:
    """The ``graphs.app:build_app`` applications of a Serve config, or a bare AppConfig.

    Raises:
        ConfigFileError: the file is missing, not YAML, or holds no such application.
    """
    return _apps(path, read_config(path))


def _apps(path: Path, data: dict) -> list[App]:
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
        return None, _lines(error)


def _lines(error: ValidationError, prefix: str = "") -> list[str]:
    return [f"{prefix}{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}"
            for e in error.errors()]


def serve_errors(data: dict) -> list[str]:
    """What Serve itself would reject in a Serve config, and the fields it would silently
    ignore (it accepts unknown fields at the top, in ``http_options`` and in each
    application, so a mistyped ``http_option`` or ``arg`` would go unnoticed)."""
    from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

    problems = _unknown("", data, ServeDeploySchema)
    if isinstance(data.get("http_options"), dict):
        problems += _unknown("http_options.", data["http_options"], HTTPOptionsSchema)
    for i, app in enumerate(data.get("applications") or []):
        if isinstance(app, dict):
            problems += _unknown(f"applications.{i}.", app, ServeApplicationSchema)
    try:
        ServeDeploySchema.model_validate(data)
    except ValidationError as error:
        problems += _lines(error)
    return problems


def _unknown(where: str, section: dict, schema: type[BaseModel]) -> list[str]:
    known = {name for key, field in schema.model_fields.items()
             for name in (key, field.alias) if name}
    lines = []
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"{where}{key}: unknown field{hint}")
    return lines


def source(reference: str) -> str:
    """Where a model's weights come from: ``embedded``, ``local`` or ``hub``."""
    if reference in EMBEDDED_MODELS:
        return "embedded"
    return "local" if is_local_path(reference) else "hub"


def references(spec: ModelSpec) -> list[str]:
    """The models an entry names: its model, or a pool's explicit members (a pool
    directory's members are local)."""
    return list(spec.members) if spec.model is None else [spec.model]


def is_cached(repo: str, revision: str | None) -> bool:
    """Whether the Hub repo's ``config.json`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)


def print_table(rows: Sequence[tuple[str, ...]], indent: str = "") -> None:
    """Print ``rows`` (the first is the header) as aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print(indent + "  ".join([*cells, row[-1]]).rstrip())


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
        if spec.model is None:
            model = f"pool: {spec.pool or ''} {len(spec.members)} listed".strip()
            origin = ",".join(sorted({source(r) for r in spec.members} | (
                {"local"} if spec.pool else set())))
        else:
            model = spec.model + (f"@{spec.revision}" if spec.revision else "")
            origin = source(spec.model)
        table.append((spec.name, spec.task, model, origin,
                      str(replicas[0]) if scaling is None else "{}-{}".format(*replicas),
                      f"{spec.num_cpus:g}", f"{spec.num_gpus:g}", str(spec.max_batch_size),
                      f"{spec.batch_wait_timeout_s * 1000:g} ms"))
        table += [(f"  {view.name}", view.task, f"(view of {spec.name})", "", "", "", "", "", "")
                  for view in spec.views]
    print_table(table, indent="  ")
    total = f"{cpus[0]:g} CPUs, {gpus[0]:g} GPUs"
    if cpus != cpus[::-1] or gpus != gpus[::-1]:
        total = f"{cpus[0]:g}-{cpus[1]:g} CPUs, {gpus[0]:g}-{gpus[1]:g} GPUs (autoscaling)"
    print(f"  ingress: {ingress.num_replicas} x {ingress.num_cpus:g} CPU; "
          f"reserved in all (models, tokenizers, ingress): {total}")


def _offline_checks(config: AppConfig) -> tuple[list[str], list[str]]:
    """(errors, Hub ids missing from the local cache) that need no network."""
    errors, missing = [], []
    for spec in config.models:
        for reference in references(spec):
            package = EMBEDDED_MODELS.get(reference)
            if package and importlib.util.find_spec(package) is None:
                errors.append(f"{spec.name}: {reference} needs the {package} package, "
                              "not installed")
            if source(reference) == "hub" and not is_cached(reference, spec.revision):
                missing.append(reference + (f"@{spec.revision}" if spec.revision else ""))
    return errors, missing


def check_configs(paths: list[Path], strict: bool = False, serve_config: bool = False) -> bool:
    """Validate each config, print a summary (stdout) and the problems (stderr).

    Args:
        paths: Serve configs, or bare AppConfig YAMLs unless ``serve_config``.
        strict: Hub models missing from the local cache are errors, not warnings.
        serve_config: each file must be a Serve config (what ``serve run`` takes).

    Returns:
        True if every config is valid.
    """
    from huggingface_hub import constants

    failed = False
    for path in paths:
        try:
            data = read_config(path)
            apps = _apps(path, data)
        except ConfigFileError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        if apps[0].where:
            top = serve_errors(data)
        else:
            top = ["(config): not a Serve config (no `applications`)"] if serve_config else []
        if top:
            print(f"{path}: INVALID", file=sys.stderr)
            print("\n".join(f"  {line}" for line in top), file=sys.stderr)
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
                errors += [line] if strict else []
            print(f"{label}: {'INVALID' if errors else 'OK'}, {len(config.models)} model(s)")
            _summary(config)
            if missing and not strict:
                print(f"  warning: {line}")
            for line in errors:
                print(f"  error: {line}", file=sys.stderr)
            failed = failed or bool(errors)
    return not failed
