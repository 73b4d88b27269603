"""The examples of the README and of every page under docs/, executed: `serve run
serve_config.yaml` through the real CLI, then every `curl` example against it, and the Python
examples (handles in the session's Ray, HTTP clients against the CLI server)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port

from serving.haproxy_edge import launcher_path

ROOT = Path(__file__).resolve().parents[2]
# The README and every docs page, by path relative to the repository: all their examples run.
DOCS = {path.relative_to(ROOT).as_posix(): path.read_text()
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
# The section whose examples target the Hub profile (configs/hub.yaml), not the default app:
# test_readme_tasks_http.py checks their answers' shapes against tiny models instead.
TASKS_HEADING = "An example per task"
# The page whose examples call model pools: test_pools_http.py runs them on the test app's.
POOLS_PAGE = "docs/pools.md"
# The page whose examples call text-generation models (the Hub profile's and a chat model):
# test_openai_generation_http.py runs them on the test app's tiny stand-ins.
OPENAI_GENERATION_PAGE = "docs/api/openai-generation.md"
# Pages whose examples run against the test app instead of the default application.
ELSEWHERE = {POOLS_PAGE, OPENAI_GENERATION_PAGE}


def headings(text: str) -> list[tuple[int, int, str]]:
    """``(offset, level, title)`` of each Markdown heading of ``text``, outside code blocks."""
    found, offset, fenced = [], 0, False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"(#{1,6}) (.*)", line)):
            found.append((offset, len(match.group(1)), match.group(2).strip()))
        offset += len(line)
    return found


def split_docs(docs: dict[str, str] = DOCS) -> tuple[str, dict[str, str]]:
    """``(the "An example per task" section, every page without that section)``.

    The section runs from its heading (any level) to the next heading of the same or a
    higher level, or to the end of its page; exactly one page must hold it.
    """
    found = [(name, i) for name, text in docs.items()
             for i, (_, _, title) in enumerate(headings(text)) if title == TASKS_HEADING]
    assert len(found) == 1, f"{TASKS_HEADING!r} must head one section of one page: {found}"
    ((name, index),) = found
    text, marks = docs[name], headings(docs[name])
    start, level, _ = marks[index]
    end = next((offset for offset, depth, _ in marks[index + 1:] if depth <= level), len(text))
    return text[start:end], {**docs, name: text[:start] + text[end:]}


def doc_blocks(language: str) -> list[tuple[str, str]]:
    """``(page, code)`` of every ``language`` block of the README and the docs pages (but
    the pages whose examples run elsewhere)."""
    return [(name, body) for name, text in DOCS.items() if name not in ELSEWHERE
            for lang, body in BLOCK.findall(text) if lang == language]


def curl_examples(text: str | None = None) -> list[tuple[str, object | None]]:
    """Each ``curl`` example of ``text`` with the JSON shown right after it (if any).

    By default every page without the "An example per task" section: the examples that
    run against the default application (serve_config.yaml).
    """
    if text is None:  # some pages' examples call the test app's models instead
        texts = [page for name, page in split_docs()[1].items() if name not in ELSEWHERE]
    else:
        texts = [text]
    examples = []
    for page in texts:  # a page's last example never takes the next page's JSON
        blocks = BLOCK.findall(page)
        for i, (lang, body) in enumerate(blocks):
            if lang == "bash" and body.lstrip().startswith("curl"):
                following = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
                expected = json.loads(following[1]) if following[0] == "json" else None
                examples.append((body.strip(), expected))
    return examples


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory):
    """`serve run` on a copy of serve_config.yaml that only moves the port; stopped by PID."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    path = tmp_path_factory.mktemp("cli") / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(path.parent / "serve.log", "w")  # noqa: SIM115
    # The environment `make serve` runs with (HAProxy in front of direct-ingress replicas),
    # with HAProxy's files and side ports moved out of the way of any other server.
    haproxy_dir = Path(tempfile.mkdtemp(prefix="hap", dir="/tmp"))  # socket paths stay short
    env = {**os.environ, "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1",
           "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
           "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy_dir / "haproxy.cfg"),
           "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy_dir / "admin.sock"),
           "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy_dir),
           "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy_dir / "server-state"),
           "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
           "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
           "RAY_SERVE_HAPROXY_BINARY_PATH": launcher_path(),
           # Throughput-optimized mode buffers 1000 log records per replica before writing;
           # write each at once so the request-id test finds its lines.
           "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1"}
    process = subprocess.Popen(
        [_serve_cli(), "run", str(path)],  # the `serve` CLI
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, path.parent / "serve.log")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # serve run ignores SIGINT in the background
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        _stop_leftover_haproxy(haproxy_dir)
        shutil.rmtree(haproxy_dir, ignore_errors=True)


def test_haproxy_runs_with_a_bounded_queue_per_ingress_replica(cli_server):
    """`make serve` starts HAProxy through transformers-serve-haproxy: the HAProxy serving
    this port runs the rewritten configuration (serving/haproxy_edge.py)."""
    port = cli_server.rsplit(":", 1)[1]
    server = re.compile(r"\n +server SERVE_REPLICA\S+ \S+ check .*maxconn 512\n")
    deadline = time.monotonic() + 30  # Ray adds the replicas' server lines in a reload
    while True:
        ours = _haproxy_configs(port)
        text = ours[0].read_text() if ours else ""
        if server.search(text) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ours and all(c.name.endswith(".edge") for c in ours), ours
    assert "timeout queue 2000ms" in text
    assert server.search(text), text


def _haproxy_configs(port: str) -> list[Path]:
    """The configuration files of the running HAProxy processes that bind ``port``."""
    configs = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if proc.name.isdigit() and "-f" in args and "haproxy" in args[0]:
            configs.append(Path(args[args.index("-f") + 1]))
    return [c for c in configs if c.exists() and f":{port}\n" in c.read_text()]


def _serve_cli() -> str:
    """The `serve` script of this Python's Ray (next to the interpreter, else on PATH: a
    virtualenv with system site-packages keeps Ray's scripts outside its bin/)."""
    beside = Path(sys.executable).parent / "serve"
    return str(beside) if beside.exists() else shutil.which("serve") or str(beside)


def _stop_leftover_haproxy(haproxy_dir: Path) -> None:
    """HAProxy drains for a while after Serve shuts down; stop the one this test started
    (found by its private config directory) so the next run finds its ports free."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and "haproxy" in cmdline and str(haproxy_dir) in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve run exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"serve run never became healthy:\n{log.read_text()[-3000:]}")


def served_names(config_path: Path) -> set[str]:
    """Model and view names of a Serve config's first application."""
    models = yaml.safe_load(config_path.read_text())["applications"][0]["args"]["models"]
    return {name for model in models
            for name in (model["name"], *(view["name"] for view in model.get("views", [])))}


def test_readme_has_examples():
    assert len(curl_examples()) >= 4
    assert doc_blocks("python")
    # The README keeps one example per way in: HTTP, the serve CLI, a DeploymentHandle.
    readme = DOCS["README.md"]
    assert curl_examples(readme) and "serve deploy serve_config.yaml" in readme
    assert any("get_app_handle" in body for lang, body in BLOCK.findall(readme)
               if lang == "python")
    # Examples outside the Hub section must be answerable by the default application.
    default = served_names(ROOT / "serve_config.yaml")
    for command, _ in curl_examples():
        name = re.search(r"/models/([\w.-]+)", command)
        assert name is None or name.group(1) in default, command


@pytest.mark.parametrize("command,expected", curl_examples())
def test_curl_example(cli_server, command, expected):
    command = command.replace("http://127.0.0.1:8000", cli_server)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    if expected is not None:
        assert body == expected
    else:
        assert not (isinstance(body, dict) and "error" in body), body


HTTP_BASE = "http://127.0.0.1:8000"


def test_python_example(served_app, capsys):
    # Examples that call through handles run in the session's Ray; HTTP ones run below.
    for page, block in doc_blocks("python"):
        if HTTP_BASE not in block:
            exec(compile(block, page, "exec"), {})
    printed = capsys.readouterr().out
    assert "2 384" in printed and "['minilm']" in printed and "not found:" in printed
    assert "100 answers, 384 dimensions each" in printed  # docs/python.md's AppClient


def test_python_http_examples(cli_server, capsys, monkeypatch):
    import huggingface_hub.constants

    # conftest sets HF_HUB_OFFLINE=1, with which InferenceClient refuses every URL.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    blocks = [(page, block) for page, block in doc_blocks("python") if HTTP_BASE in block]
    assert blocks
    printed = []  # per block: the pages' order must not matter
    for page, block in blocks:
        exec(compile(block.replace(HTTP_BASE, cli_server), page, "exec"), {})
        printed.append(capsys.readouterr().out.split())
    assert sorted(printed) == sorted([["384", "8"], ["(2,", "384)", "(384,)", "0"]])


def test_profiles_agree_with_the_default_config():
    default = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    profile = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert default == profile


def test_request_id_reaches_the_json_logs_of_every_deployment(cli_server):
    """Through HAProxy: the client's X-Request-ID comes back, and each deployment's JSON
    log lines for that request carry it (serve_config.yaml logs as JSON)."""
    request_id = f"readme-{uuid.uuid4().hex}"
    response = httpx.post(f"{cli_server}/models/minilm", json={"inputs": ["a", "b"]},
                          headers={"X-Request-ID": request_id}, timeout=60)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    sessions = sorted(Path("/tmp/ray").glob("session_2*"), key=lambda p: p.stat().st_mtime)
    deadline, lines = time.monotonic() + 30, {}
    while time.monotonic() < deadline and len(lines) < 3:
        for path in (p for s in sessions[-3:] for p in (s / "logs" / "serve").glob("replica_*")):
            for line in path.read_text(errors="replace").splitlines():
                if request_id in line:
                    lines[path.name.split("_")[2]] = json.loads(line)
        time.sleep(1)
    assert {"Ingress", "minilm-tokenizer", "minilm-model"} <= set(lines), sorted(lines)
    assert all(request_id in entry["request_id"] for entry in lines.values())
