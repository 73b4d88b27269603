"""The true limit: the bare model's best throughput on this machine across the runtimes a
user could pick (PyTorch, ONNX Runtime, OpenVINO; float32 and int8), at each split of the
cores into processes and threads, and how far each int8 variant's embeddings move.

Each measurement is tokenize + forward + mean pooling + normalization of short texts (the
benchmark's), at batch 1 and batch 32, in ``processes`` processes of ``threads`` threads
each, all running at once for the same seconds; throughput is their sum. Conversions run
once in this process (``prepare``), each measuring process loads the result (``load``).

int8 variants are calibrated (static ones) on sentences of the project's own docs and
scored on other sentences of them (held out): mean and lowest cosine to PyTorch float32,
and agreement of each sentence's nearest neighbour among the held-out ones.
"""

from __future__ import annotations

import multiprocessing
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtimes.convert import RUNTIMES, prepare
from bench.workloads import texts
from serving.engines.openvino_engine import openvino_config

ROOT = Path(__file__).resolve().parents[2]
Embed = Callable[[list[str]], np.ndarray]

CALIBRATION_SENTENCES = 300


def docs_sentences() -> tuple[list[str], list[str]]:
    """Prose sentences of README.md and docs/*.md (code, tables and headings left out),
    split alternately into (calibration, held out)."""
    found: list[str] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        prose = re.sub(r"```.*?```", " ", path.read_text(), flags=re.S)
        lines = [line for line in prose.splitlines()
                 if line.strip() and not line.lstrip().startswith(("#", "|", "!["))]
        text = re.sub(r"[`*_\[\]]|\(\S+?\)", "", " ".join(lines))
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if 5 <= len(sentence.split()) <= 60:
                found.append(sentence.strip())
    unique = list(dict.fromkeys(found))
    return unique[0::2], unique[1::2]


# --- loading and running (in each measuring process) ---

def _forward_fn(name: str, artifact: str, threads: int) -> Callable[[dict], np.ndarray]:
    """tokenized batch (numpy) → last hidden state, in runtime ``name``."""
    family, quantization = RUNTIMES[name]
    if family == "torch":
        import torch
        from transformers import AutoModel

        from serving.engines.torch_engine import quantize_int8

        torch.set_num_threads(threads)
        model = AutoModel.from_pretrained(artifact).eval()
        if quantization:
            model = quantize_int8(model, "cpu")

        def forward(batch: dict) -> np.ndarray:
            with torch.inference_mode():
                tensors = {key: torch.from_numpy(value) for key, value in batch.items()}
                return model(**tensors).last_hidden_state.numpy()

        return forward
    if family == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(artifact, options,
                                               providers=["CPUExecutionProvider"])
        inputs = [i.name for i in session.get_inputs()]
        return lambda batch: session.run(None, {key: batch[key] for key in inputs})[0]
    import openvino as ov

    # As engine: openvino compiles (serving/engines/openvino_engine.py).
    compiled = ov.Core().compile_model(artifact, "CPU", openvino_config(threads))
    request = compiled.create_infer_request()
    inputs = [port.any_name for port in compiled.inputs]

    def forward(batch: dict) -> np.ndarray:
        return request.infer({key: batch[key] for key in inputs})[compiled.output(0)].copy()

    return forward


def load(name: str, artifact: str, model_dir: str, threads: int) -> Embed:
    """``texts → normalized mean-pooled embeddings`` in runtime ``name``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    forward = _forward_fn(name, artifact, threads)

    def embed(batch: list[str]) -> np.ndarray:
        encoded = dict(tokenizer(batch, padding=True, truncation=True, return_tensors="np"))
        if "token_type_ids" not in encoded:
            encoded["token_type_ids"] = np.zeros_like(encoded["input_ids"])
        hidden = forward(encoded)
        mask = encoded["attention_mask"][..., None].astype(hidden.dtype)
        pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    return embed


def rate(embed: Embed, pool: list[str], size: int, seconds: float) -> float:
    """Texts/s of ``embed`` over batches of ``size`` texts of ``pool`` for ``seconds``."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        start = (done * size) % (len(pool) - size)
        embed(pool[start : start + size])
        done += 1
    return done * size / (time.perf_counter() - started)


def _measure(name: str, artifact: str, model_dir: str, threads: int, size: int,
             seconds: float, start: Any, results: Any) -> None:
    embed = load(name, artifact, model_dir, threads)
    pool = texts("short", 512)
    for _ in range(3):  # warm-up
        embed(pool[:size])
    start.wait()
    results.put(rate(embed, pool, size, seconds))


def throughput(name: str, artifact: str, model_dir: str, processes: int, threads: int,
               size: int, seconds: float) -> float:
    """Texts/s of ``processes`` processes of ``threads`` threads running batches of
    ``size`` short texts at the same time (their sum)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_measure, args=(name, artifact, model_dir, threads,
                                                       size, seconds, start, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return total


def accuracy(embed: Embed, reference: np.ndarray, sentences: list[str]) -> dict[str, float]:
    """Mean and lowest cosine of ``embed``'s embeddings of ``sentences`` to ``reference``
    (PyTorch float32's), and agreement of each sentence's nearest neighbour."""
    ours = np.concatenate([embed(sentences[i : i + 16]) for i in range(0, len(sentences), 16)])
    cosine = (ours * reference).sum(1)
    neighbours = [np.argmax(x @ x.T - 2 * np.eye(len(x)), axis=1) for x in (reference, ours)]
    return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
            "neighbour_agreement": float((neighbours[0] == neighbours[1]).mean())}


def survey(model_dir: str, names: list[str], splits: list[tuple[int, int]], sizes: list[int],
           seconds: float, progress: Callable[[str], None] = print) -> dict:
    """Every runtime of ``names`` at every split and batch size, with its accuracy: the
    run ``bench.runtimes.report`` writes and reads the true limit from."""
    calibration, held_out = docs_sentences()
    calibration = calibration[:CALIBRATION_SENTENCES]
    run: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "cores": multiprocessing.cpu_count(), "model": model_dir, "seconds": seconds,
                 "calibration_sentences": len(calibration), "held_out": len(held_out),
                 "runtimes": {}}
    reference = load("torch", model_dir, model_dir, 2)(held_out)
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            began = time.perf_counter()
            artifact = prepare(name, model_dir, Path(workdir), calibration)
            result = {"prepare_s": time.perf_counter() - began,
                      **accuracy(load(name, artifact, model_dir, 2), reference, held_out),
                      "texts_per_s": {}}
            for processes, threads in splits:
                for size in sizes:
                    measured = throughput(name, artifact, model_dir, processes, threads, size,
                                          seconds)
                    result["texts_per_s"][f"{processes}x{threads} b{size}"] = measured
                    progress(f"{name} {processes}x{threads} batch {size}: {measured:.0f} texts/s")
            run["runtimes"][name] = result
    return run


def core_splits(cores: int) -> list[tuple[int, int]]:
    """Every (processes, threads each) that uses all ``cores``: 1x2 and 2x1 for two."""
    return [(processes, cores // processes) for processes in range(1, cores + 1)
            if cores % processes == 0]
