"""The limit: the model's own throughput with no serving at all (tokenize + forward +
pooling in this process, at the best batch size)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.workloads import texts


@dataclass
class Limit:
    length: str
    batch_size: int  # the best one
    texts_per_s: float
    threads: int
    by_batch_size: dict[int, float]


def _embedder(model_dir: str, quantize: bool = False, onnx: bool = False):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from serving.engines.onnx_engine import accelerate
    from serving.engines.torch_engine import TorchEngine, quantize_int8

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    if quantize:
        model = quantize_int8(model, "cpu")
    engine = TorchEngine(model, "cpu", "float32")
    if onnx:
        engine = accelerate(engine, torch.get_num_threads())
        if engine.name != "onnx":
            raise RuntimeError("the ONNX export failed (see the log)")

    def embed(batch: list[str]):
        encoded = tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = engine.forward(dict(encoded)).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    return embed


def rate(embed, pool: list[str], size: int, seconds: float) -> float:
    """Texts/s of ``embed`` over batches of ``size`` texts of ``pool`` for ``seconds``."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        start = (done * size) % (len(pool) - size)
        embed(pool[start : start + size])
        done += 1
    return done * size / (time.perf_counter() - started)


def quantization(model_dir: str, seconds: float = 3.0) -> dict:
    """int8 dynamic quantization against float32: speed at batch 32 (short texts) and how
    far the embeddings move (cosine to float32; agreement of each text's nearest neighbour
    among the others, i.e. what a retrieval or embedding zero-shot answer would pick)."""
    import numpy as np

    pool = texts("mixed", 256)
    fp32, int8 = _embedder(model_dir), _embedder(model_dir, quantize=True)
    short = texts("short", 512)
    rates = {name: rate(embed, short, 32, seconds) for name, embed in
             (("float32", fp32), ("int8", int8))}
    a = np.concatenate([fp32(pool[i : i + 32]) for i in range(0, len(pool), 32)])
    b = np.concatenate([int8(pool[i : i + 32]) for i in range(0, len(pool), 32)])
    cosine = (a * b).sum(1)
    neighbours = [np.argsort(-(x @ x.T - 2 * np.eye(len(x))), axis=1)[:, 0] for x in (a, b)]
    return {"float32_texts_per_s": rates["float32"], "int8_texts_per_s": rates["int8"],
            "speedup": rates["int8"] / rates["float32"],
            "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
            "nearest_neighbour_agreement": float((neighbours[0] == neighbours[1]).mean())}


def onnx_engine(model_dir: str, seconds: float = 3.0) -> dict:
    """``engine: onnx`` against PyTorch on the bare model: short texts at batch 1 and 32,
    and how far the embeddings move (largest absolute difference, lowest cosine)."""
    import numpy as np

    torch_embed, onnx_embed = _embedder(model_dir), _embedder(model_dir, onnx=True)
    short, pool = texts("short", 512), texts("mixed", 256)
    rates = {f"{name}_b{size}_texts_per_s": rate(embed, short, size, seconds)
             for size in (1, 32) for name, embed in (("torch", torch_embed), ("onnx", onnx_embed))}
    # Batches of 4: even 4 long texts stay under TORCH_ABOVE_TOKENS, so ONNX Runtime runs.
    a = np.concatenate([torch_embed(pool[i : i + 4]) for i in range(0, len(pool), 4)])
    b = np.concatenate([onnx_embed(pool[i : i + 4]) for i in range(0, len(pool), 4)])
    return {**rates, "max_abs_diff": float(np.abs(a - b).max()),
            "cosine_min": float((a * b).sum(1).min())}


def measure(model_dir: str, lengths=("short", "long", "mixed"), batch_sizes=(1, 8, 16, 32, 64),
            seconds: float = 3.0) -> list[Limit]:
    """Texts/s of tokenize + forward + mean pooling for each length and batch size."""
    import torch

    embed = _embedder(model_dir)
    results = []
    for length in lengths:
        pool = texts(length, 512)
        embed(pool[:8])  # warm-up
        rates = {size: rate(embed, pool, size, seconds) for size in batch_sizes}
        best = max(rates, key=rates.get)
        results.append(Limit(length, best, rates[best], torch.get_num_threads(), rates))
    return results
