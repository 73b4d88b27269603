"""GPU smoke test and benchmark: ``python scripts/gpu_check.py [--quick] [--hub]``.

On a machine with a CUDA device:

1. parity: MiniLM's embeddings from the model runner on CUDA (float32, float16, bfloat16
   where the GPU has it, float16 + ``compile``) against float32 on the CPU, by cosine;
2. the benchmark (``python -m bench``) of configs/gpu.yaml's application served by Ray
   Serve on the GPU, with float32 and ``compile`` variants. It needs ``wrk`` (``make wrk``).
   Without ``--hub`` only the models available offline are deployed.

Exit status: 0 passed, 1 failed, 77 skipped (no CUDA device visible: nothing was run).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from serving.load_settings import LoadSettings

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = 77
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Lowest cosine to the CPU float32 embedding that each variant must reach on every text.
MIN_COSINE = {"float32": 0.99999, "float16": 0.999, "bfloat16": 0.99, "float16+compile": 0.999}
TEXTS = ["Ray Serve batches requests.", "hi", "The weather in Paris was sunny yesterday. " * 6,
         "A man is eating food.", "Dynamic batching groups requests so the model runs on "
         "larger batches, which is what a GPU wants.", "The sky is blue."] * 8


def offline_config(document: dict) -> dict:
    """``document`` (a Serve config) with only the models whose weights need no Hub."""
    from serving.models import EMBEDDED_MODELS, is_local_path

    document = copy.deepcopy(document)
    for application in document["applications"]:
        models = application["args"]["models"]
        application["args"]["models"] = [
            m for m in models if m["model"] in EMBEDDED_MODELS or is_local_path(m["model"])]
    return document


def _embed(settings: LoadSettings, texts: list[str]):
    import numpy as np

    from serving.runner import ModelRunner
    from serving.tokenization import TextTokenizer

    runner = ModelRunner.load(settings)
    encoded = TextTokenizer.from_settings(settings).encode(texts)
    runner.run([encoded])  # warm-up (and compilation)
    started = time.perf_counter()
    (vectors,) = runner.run([encoded])
    return runner, np.stack(vectors), time.perf_counter() - started


def parity() -> bool:
    """Every CUDA variant's embeddings against the CPU's float32 ones."""
    import numpy as np
    import torch

    from serving.config import ModelSpec

    def settings(**fields) -> LoadSettings:
        return ModelSpec(name="minilm", task="feature-extraction", model=MINILM,
                         **fields).load_settings()

    _, reference, cpu_s = _embed(settings(device="cpu"), TEXTS)
    print(f"cpu float32: {len(TEXTS)} texts in {cpu_s * 1e3:.1f} ms")
    variants = {"float32": {"dtype": "float32"}, "float16": {"dtype": "float16"},
                "float16+compile": {"dtype": "float16", "compile": True}}
    if torch.cuda.is_bf16_supported():
        variants["bfloat16"] = {"dtype": "bfloat16"}
    passed = True
    for name, fields in variants.items():
        runner, vectors, seconds = _embed(settings(device="cuda", **fields), TEXTS)
        cosine = np.sum(vectors * reference, axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
        dtype = next(runner.model.parameters()).dtype
        ok = runner.device == "cuda" and bool(cosine.min() >= MIN_COSINE[name])
        passed &= ok
        print(f"cuda {name} ({dtype}): min cosine {cosine.min():.6f} "
              f"(>= {MIN_COSINE[name]}), {seconds * 1e3:.1f} ms: {'ok' if ok else 'FAILED'}")
    return passed


def benchmark(quick: bool, hub: bool) -> bool:
    """``python -m bench`` on configs/gpu.yaml's application (offline models only unless
    ``hub``); results in bench/results/gpu/."""
    if shutil.which("wrk") is None:
        print("the benchmark needs wrk: run `make wrk` first", file=sys.stderr)
        return False
    document = yaml.safe_load((ROOT / "configs" / "gpu.yaml").read_text())
    if not hub:
        document = offline_config(document)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        yaml.safe_dump(document, config)
    command = [sys.executable, "-m", "bench", "--systems", "project", "--config", config.name,
               "--variant", "fp32:dtype=float32", "--variant", "compile:compile=true",
               "--out", str(ROOT / "bench" / "results" / "gpu")]
    command += ["--smoke"] if quick else [
        "--matrix", "single-short=1,64 batch32-short=16 batch32-mixed=16", "--rates", ""]
    print("running:", " ".join(command), flush=True)
    try:
        return subprocess.run(command, cwd=ROOT, check=False).returncode == 0
    finally:
        os.unlink(config.name)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long benchmark")
    parser.add_argument("--hub", action="store_true",
                        help="also deploy configs/gpu.yaml's Hub models (needs Hub access)")
    parser.add_argument("--no-bench", action="store_true", help="parity checks only")
    options = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); "
              f"skipped (exit {SKIPPED})", file=sys.stderr)
        return SKIPPED
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    passed = parity()
    if not options.no_bench:
        passed &= benchmark(options.quick, options.hub)
    print("gpu_check:", "passed" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
