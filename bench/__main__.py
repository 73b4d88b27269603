"""``python -m bench``: the limit, the plain baseline, Infinity and this project, one run.

Every system runs alone (one server at a time on the machine) against the same inputs;
results go to ``--out`` as results.json, results.md and results.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from bench import limit, loadgen, report
from bench.project import ROOT, Project, default_args, free_port
from bench.workloads import Workload, parse

SYSTEMS = ("limit", "baseline", "infinity", "project", "project-handle", "project-count")
FULL = {  # workload -> closed-loop client counts
    "single-short": (1, 16, 64, 256),
    "single-long": (16, 64),
    "single-mixed": (64,),
    "batch32-short": (16,),
    "batch32-mixed": (16,),
}
COUNT_ONLY = ("single-mixed", "batch32-mixed")  # where length-unaware batching is compared
SMOKE = {"single-mixed": (1, 4), "batch32-short": (1,)}


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--duration", type=float, default=10, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per system")
    parser.add_argument("--rates", default="50,150",
                        help="open-loop arrival rates (req/s) of single-short requests")
    parser.add_argument("--model-dir", help="model directory (default: the embedded MiniLM)")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml",
                        help="Serve config whose first app is benchmarked")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also measure the project with these model settings changed, "
                        "e.g. 'int8:quantize=int8' (reported as project-NAME; repeatable)")
    parser.add_argument("--matrix", help="workloads and client counts instead of the full "
                        "matrix, e.g. 'single-short=1,64 batch32-short=16'")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run of a tiny matrix: checks the harness only")
    return parser.parse_args()


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.systems = [s.strip() for s in options.systems.split(",") if s.strip()]
        unknown = set(self.systems) - set(SYSTEMS)
        if unknown:
            raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
        self.variants = dict(_variant(text) for text in options.variant)
        self.systems += [f"project-{name}" for name in self.variants]
        self.args = default_args(options.config)
        self.model_spec = self.args["models"][0]
        self.name = self.model_spec["name"]
        self.model_dir = options.model_dir or _model_dir(self.model_spec["model"])
        self.matrix = _matrix(options.matrix) if options.matrix else (
            SMOKE if options.smoke else FULL)
        self.rates = [] if options.smoke else [float(r) for r in options.rates.split(",") if r]
        self.results: list[dict] = []
        self.failures: list[str] = []
        self._tokens = _tokens_per_text(self.model_dir, list(self.matrix))

    # --- plan --------------------------------------------------------------------------

    def cells(self, system: str) -> list[tuple[str, str, float]]:
        """(workload, mode, clients or rate) for one system."""
        if system == "project-count":
            return [(w, "closed", c) for w in COUNT_ONLY if w in self.matrix
                    for c in self.matrix[w]]
        cells = [(w, "closed", c) for w, clients in self.matrix.items() for c in clients]
        if system in ("project", "baseline", "infinity"):
            cells += [("single-short", "open", rate) for rate in self.rates]
        return cells

    # --- run ---------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        servers = [s for s in self.systems if s != "limit"]
        total = sum(len(self.cells(s)) for s in servers) + 3 * ("limit" in self.systems)
        limits, quantization, onnx = [], None, None
        with tqdm(total=total, unit="cell", dynamic_ncols=True) as bar:
            if "limit" in self.systems:
                bar.set_description("limit: bare model")
                lengths = sorted({parse(w).length for w in self.matrix})
                limits = [asdict(x) for x in limit.measure(
                    self.model_dir, lengths=lengths,
                    batch_sizes=(1, 8, 32) if self.options.smoke else (1, 8, 16, 32, 64),
                    seconds=0.5 if self.options.smoke else 3)]
                bar.update()
                bar.set_description("limit: int8 vs float32")
                quantization = limit.quantization(
                    self.model_dir, seconds=0.5 if self.options.smoke else 3)
                bar.update()
                bar.set_description("limit: ONNX Runtime vs PyTorch")
                onnx = limit.onnx_engine(self.model_dir, seconds=0.5 if self.options.smoke else 3)
                bar.update()
            for system in ("baseline", "infinity"):
                if system in self.systems:
                    self._server(system, bar)
            project = [s for s in servers if s.startswith("project")]
            if project:
                self._project(project, bar)
        run = {"started": started, "machine": _machine(), "model": self.model_spec["model"],
               "duration_s": self.options.duration, "limits": limits,
               "quantization": quantization, "onnx": onnx, "results": self.results,
               "failures": self.failures,
               "config": str(self.options.config)}
        run["targets"] = report.targets(self.results, limits)
        return run

    def _server(self, system: str, bar: tqdm) -> None:
        bar.set_description(f"{system}: starting")
        port = free_port()
        if system == "baseline":
            process = _start_baseline(self.model_dir, port)
            path = "/embed"
        else:
            from bench import infinity

            self.options.out.mkdir(parents=True, exist_ok=True)
            process = infinity.start(self.model_dir, port,
                                     log_path=self.options.out / "infinity.log")
            path = infinity.embed_path()
        try:
            if system == "baseline":
                body = lambda x: json.dumps({"inputs": x})  # noqa: E731
            else:
                body = lambda x: json.dumps(infinity.request_body(x))  # noqa: E731
            self._cells(system, f"http://127.0.0.1:{port}", path, bar, body)
        finally:
            _stop(process)

    def _project(self, systems: list[str], bar: tqdm) -> None:
        bar.set_description("project: starting Ray Serve")
        project = Project()
        try:
            base = self.args
            project.deploy(base)
            body = lambda x: json.dumps({"inputs": x})  # noqa: E731
            for system in systems:
                try:
                    if system == "project-count":
                        project.deploy(_with_model_settings(base, length_buckets=False))
                    elif system.removeprefix("project-") in self.variants:
                        project.deploy(_with_model_settings(
                            base, **self.variants[system.removeprefix("project-")]))
                    self._cells(system, project.url, f"/models/{self.name}", bar, body,
                                handle=project if system == "project-handle" else None)
                except Exception as exc:  # one broken variant must not lose the others
                    self.failures.append(f"{system}: {type(exc).__name__}: {exc}")
                    bar.write(f"{system} failed: {exc}")
        finally:
            project.stop()

    def _cells(self, system: str, url: str, path: str, bar: tqdm, body, handle=None) -> None:
        warm = [body(x) for x in Workload("short", 1).requests(64)]
        if handle is None:
            loadgen.closed_loop(url, path, warm, 16, self.options.warmup)
        else:
            handle.handle_closed_loop(self.name, Workload("short", 1).requests(64), 16,
                                      self.options.warmup)
        for workload_name, mode, level in self.cells(system):
            # Each cell starts on an idle server, not on the leftovers of the one before.
            loadgen.wait_drained(url, path, warm[0])
            time.sleep(1)
            load = f"x{int(level)}" if mode == "closed" else f"@{level:g}/s"
            bar.set_description(f"{system}: {workload_name} {load}")
            workload = parse(workload_name)
            inputs = workload.requests(64 if workload.per_request > 1 else 256)
            if handle is not None:
                measured = handle.handle_closed_loop(self.name, inputs, int(level),
                                                     self.options.duration)
            elif mode == "closed":
                measured = loadgen.closed_loop(url, path, [body(x) for x in inputs],
                                               int(level), self.options.duration)
            else:
                measured = loadgen.open_loop(url, path, [body(x) for x in inputs], level,
                                             self.options.duration)
            self._record(system, workload, mode, level, measured)
            bar.update()

    def _record(self, system, workload, mode, level, measured) -> None:
        req_s = measured.requests / measured.duration_s if measured.duration_s else 0.0
        texts_s = req_s * workload.per_request
        self.results.append({
            "system": system, "workload": workload.name, "mode": mode,
            "clients": int(level) if mode == "closed" else None,
            "rate": level if mode == "open" else None,
            "requests": measured.requests, "req_s": req_s, "texts_s": texts_s,
            "tokens_s": texts_s * self._tokens[workload.name],
            "p50_ms": measured.p50_ms, "p95_ms": measured.p95_ms, "p99_ms": measured.p99_ms,
            "errors": measured.errors, "error_count": measured.error_count,
            "loadgen_cpu_share": measured.loadgen_cpu_share,
        })


def _variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key=value`` → (NAME, settings), values parsed as YAML scalars."""
    import yaml

    name, _, pairs = text.partition(":")
    settings = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        settings[key.strip()] = yaml.safe_load(value)
    if not name or not settings:
        raise SystemExit(f"--variant {text!r}: expected NAME:key=value,...")
    return name, settings


def _matrix(text: str) -> dict[str, tuple[int, ...]]:
    matrix = {}
    for cell in text.split():
        name, clients = cell.split("=")
        parse(name)  # validates the name
        matrix[name] = tuple(int(c) for c in clients.split(","))
    return matrix


def _with_model_settings(args: dict, **settings) -> dict:
    models = [dict(args["models"][0], **settings), *args["models"][1:]]
    return {**args, "models": models}


def _model_dir(model: str) -> str:
    from serving.models import resolve_model_source

    return resolve_model_source(model)


def _tokens_per_text(model_dir: str, workloads: list[str]) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    counts = {}
    for name in workloads:
        workload = parse(name)
        texts = [t for x in workload.requests(64) for t in ([x] if isinstance(x, str) else x)]
        ids = tokenizer(texts, truncation=True)["input_ids"]
        counts[name] = sum(map(len, ids)) / len(ids)
    return counts


def _start_baseline(model_dir: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "BENCH_MODEL_DIR": model_dir, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    _wait_http(f"http://127.0.0.1:{port}/health", process)
    return process


def _wait_http(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=5):
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def _stop(process: subprocess.Popen) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}"


def main() -> None:
    options = _options()
    if not loadgen.have_wrk():
        raise SystemExit("the benchmark needs `wrk` (Debian: apt-get install wrk)")
    bench = Bench(options)
    if "infinity" in bench.systems:
        from bench import infinity

        infinity.ensure_installed()
    run = bench.run()
    for path in report.write(run, options.out):
        print(path)
    print(report.markdown(run))
    if run["failures"]:
        raise SystemExit("failed: " + "; ".join(run["failures"]))


if __name__ == "__main__":
    main()
