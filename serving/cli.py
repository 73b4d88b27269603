"""``transformers-serve`` (or ``python -m serving.cli``): what ``serve`` does not do.

``tasks`` lists the tasks the server accepts, ``validate`` checks configs offline
(serving/cli_configs.py), ``prefetch`` downloads their Hub models into the local cache
(serving/cli_prefetch.py), ``run`` serves a config as ``make serve`` does: checked first,
stopped cleanly by SIGTERM (serving/cli_run.py), ``bench`` runs the benchmark.
Imports neither Ray nor FastAPI at import time: Serve's config schema only when a Serve
config is checked, ``huggingface_hub`` only where a command needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from serving.cli_configs import check_configs, print_table
from serving.cli_prefetch import prefetch
from serving.cli_run import run
from serving.tasks import ALIASES, TASKS
from serving.tasks.embedding_views import VIEWS

ROOT = Path(__file__).resolve().parents[1]


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
    print_table(table)
    print("\nViews are declared under a feature-extraction model (views: [{name, task}]).")
    return 0


# --- validate -------------------------------------------------------------------------


def _validate(options: argparse.Namespace) -> int:
    return 0 if check_configs(options.configs, strict=options.strict) else 1


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


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (``bench`` arguments are forwarded untouched)."""
    cli = argparse.ArgumentParser(
        prog="transformers-serve",
        description="What `serve` does not do: list the tasks, validate configs, pre-fetch "
        "their Hub models, serve a config safely, run the benchmark.")
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
    run = commands.add_parser(
        "run", help="serve a Serve config as `make serve` does: validated first, its ports "
        "checked, stopped cleanly by SIGTERM as by Ctrl-C")
    run.add_argument("config", type=Path, metavar="CONFIG")
    run.add_argument("--stop-timeout", type=float, default=45, metavar="S",
                     help="seconds for Serve's clean shutdown before it is forced (default 45)")
    commands.add_parser("bench", add_help=False,
                        help="run the benchmark: python -m bench ARGS (bench --help lists them)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after `bench` belongs to `python -m bench`
        return _bench(argv[1:])
    options = parser().parse_args(argv)
    command = {"tasks": _tasks, "validate": _validate, "prefetch": prefetch,
               "run": run}[options.command]
    try:
        return command(options)
    except BrokenPipeError:  # e.g. `transformers-serve tasks --json | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silences the flush at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
