"""The ONNX export Infinity's optimum engine serves (see ``bench/infinity.py``): optimum's
``main_export`` run in Infinity's virtualenv, once per source model, into a folder of copies
(config, tokenizer, ``model.onnx`` and the sentence-transformers pooling config); and the two
facts about a model directory that decide how Infinity serves it. Standard library only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.processes import log_tail

ONNX_STAMP = ".bench-onnx-exported"


def is_classifier(model_dir: str | Path) -> bool:
    """Whether Infinity serves ``model_dir`` on ``/classify`` (its own test, from config.json:
    a ``*SequenceClassification`` architecture with at least two labels; one label would make it
    a reranker)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return (any("SequenceClassification" in arch for arch in config.get("architectures", []))
            and len(config.get("id2label", {"0": "dummy"})) >= 2)


def pooling_method(model_dir: str | Path) -> str:
    """``mean``/``cls`` from the sentence-transformers pooling config in ``model_dir``, else
    ``auto`` (which Infinity's optimum engine takes as [CLS] pooling)."""
    for path in sorted(Path(model_dir).glob("*Pooling/config.json")):
        config = json.loads(path.read_text())
        if config.get("pooling_mode_mean_tokens"):
            return "mean"
        if config.get("pooling_mode_cls_token"):
            return "cls"
    return "auto"


# Run in the venv: optimum's exporter, with the transformers library forced so an embedder
# gives ``last_hidden_state`` (what Infinity's OptimumEmbedder reads; the sentence-transformers
# export would name its outputs token_embeddings/sentence_embedding).
_EXPORT = """
import sys
from optimum.exporters.onnx import main_export
main_export(sys.argv[1], output=sys.argv[2], task=sys.argv[3], library_name="transformers",
            do_validation=True)
"""


def _export_key(source: Path, pins: tuple[str, ...]) -> str:
    """A hash of the source's path, its files' sizes and mtimes, and ``pins``: a rebuilt model
    or another exporter gets a new export."""
    files = sorted((str(f.relative_to(source)), f.stat().st_size, f.stat().st_mtime_ns)
                   for f in source.rglob("*") if f.is_file())
    return hashlib.sha256(repr((str(source), files, pins)).encode()).hexdigest()[:12]


def onnx_model_dir(model_dir: str | Path, venv: Path, env: dict[str, str],
                   pins: tuple[str, ...], cache: Path, timeout: float = 600.0) -> Path:
    """The ONNX export of ``model_dir`` for the optimum engine, made once under ``cache`` by
    the Python of ``venv`` (with ``pins`` installed) in environment ``env``.

    Returns ``cache/<name>-<key>/model`` (``_export_key()``); its sibling ``hub/`` is the
    server's ``HF_HUB_CACHE``, where Infinity keeps the graph it optimises. The export is
    built in a temp folder and renamed into place, so an interrupted one is never served;
    nothing is written into ``model_dir``. Raises RuntimeError if the export fails.
    """
    source = Path(model_dir).resolve()
    key = _export_key(source, pins)
    home = Path(cache) / f"{source.parent.name}-{source.name}-{key}"
    target = home / "model"
    if (target / ONNX_STAMP).exists():
        return target
    home.mkdir(parents=True, exist_ok=True)
    task = "text-classification" if is_classifier(source) else "feature-extraction"
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=home))
    log = home / "export.log"
    python = Path(venv) / "bin" / "python"
    print(f"infinity: exporting {source} to ONNX ({task}) in {target} (log: {log})", flush=True)
    try:
        with open(log, "w") as out:
            code = subprocess.call([str(python), "-c", _EXPORT, str(source), str(work), task],
                                   stdout=out, stderr=subprocess.STDOUT, env=env,
                                   timeout=timeout)
        work.chmod(0o755)  # mkdtemp's 0700 would survive the rename
        if code != 0 or not (work / "model.onnx").exists():
            raise RuntimeError(f"ONNX export of {source} failed (exit {code}); "
                               f"log {log}:\n{log_tail(log)}")
        if (source / "modules.json").exists():  # so pooling_method() can read the export
            shutil.copy(source / "modules.json", work / "modules.json")
        for pooling in source.glob("*Pooling"):
            shutil.copytree(pooling, work / pooling.name, symlinks=False)
        (work / ONNX_STAMP).write_text(f"{source}\n{task}\n")
        if target.exists():  # a stale half-export from an older layout: replace it
            shutil.rmtree(target)
        os.rename(work, target)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"ONNX export of {source} took over {timeout:.0f}s; log {log}") \
            from error
    except OSError:
        if not (target / ONNX_STAMP).exists():  # not a concurrent export that won the rename
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
