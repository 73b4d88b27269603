"""``transformers-serve prefetch``: download the Hub models of configs into the local
Hugging Face cache, so that the server starts offline. ``huggingface_hub`` is imported
only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.cli_configs import (
    ConfigFileError,
    is_cached,
    load_apps,
    references,
    source,
    validate_app,
)
from serving.models import EMBEDDED_MODELS

# What the server never reads (it loads safetensors weights only): other frameworks' weights.
IGNORED_FILES = ["*.bin", "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite",
                 "*.gguf", "*.pt", "*.pth", "*.ckpt", "*.mlmodel", "onnx/*", "openvino/*",
                 "coreml/*"]


def plan(paths: list[Path]) -> tuple[dict[tuple[str, str | None], list[str]], list[str]]:
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
                for reference in references(spec):
                    origin = source(reference)
                    if origin == "hub":
                        fetch.setdefault((reference, spec.revision), []).append(spec.name)
                    elif origin == "embedded":
                        skipped.append(f"{spec.name}: {reference} is embedded "
                                       f"(ships in the {EMBEDDED_MODELS[reference]} package)")
                    else:
                        skipped.append(f"{spec.name}: {reference} is a local directory")
    return fetch, skipped


def prefetch(options: argparse.Namespace) -> int:
    """Run ``prefetch`` (``configs``, ``dry_run``, ``all_files``, ``timeout``); exit status."""
    try:
        fetch, skipped = plan(options.configs)
    except ConfigFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = "every file" if options.all_files else "safetensors weights, configs, tokenizer"
    verb = "would fetch" if options.dry_run else "will fetch"
    print(f"{verb} {len(fetch)} Hub model(s) into {constants.HF_HUB_CACHE} ({what}):")
    for (repo, revision), names in fetch.items():
        cached = "  [cached]" if is_cached(repo, revision) else ""
        print(f"  {repo}@{revision or 'main'}  (model {', '.join(names)}){cached}")
    if skipped:
        print("skipped (nothing to download):")
        print("\n".join(f"  {line}" for line in dict.fromkeys(skipped)))
    if options.dry_run:
        return 0
    failures = []
    for (repo, revision), _ in fetch.items():
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
    print(f"fetched {len(fetch) - len(failures)} of {len(fetch)} model(s)")
    return 1 if failures else 0
