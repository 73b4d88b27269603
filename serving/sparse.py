"""SPLADE sparse embeddings, as sentence-transformers' ``SparseEncoder`` computes them (no Ray).

A SPLADE model saved by sentence-transformers lists two modules in ``modules.json``: a
masked-language-model transformer (``MLMTransformer``, or since sentence-transformers 5
``Transformer`` with ``transformer_task: fill-mask``) whose output is the MLM logits, then
``SpladePooling``: ``log1p(relu(logits))`` of the attended tokens (twice ``log1p`` with the
``log1p_relu`` activation), max- or sum-pooled over tokens into one weight per vocabulary
entry. A row crosses the cluster as its non-zero entries only (:class:`SparseVector`).

Other sparse encoders (inference-free ``SparseStaticEmbedding`` query encoders behind a
``Router``, ``SparseAutoEncoder`` heads) are refused at load, naming the module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.models import read_json

STRATEGIES = ("max", "sum")
ACTIVATIONS = ("relu", "log1p_relu")


@dataclass(frozen=True)
class SpladeConfig:
    """How a SPLADE model's MLM logits become its sparse vector."""

    pooling_strategy: str = "max"  # over tokens: "max" or "sum"
    activation: str = "relu"  # "relu": log1p(relu(x)); "log1p_relu": log1p(log1p(relu(x)))
    max_active_dims: int | None = None  # keep only the k largest weights of each vector


@dataclass(frozen=True)
class SparseVector:
    """One text's sparse embedding: its non-zero entries, by increasing index, and the
    vocabulary size (what the dense vector's length would be)."""

    indices: np.ndarray  # int32
    values: np.ndarray  # float32
    dimension: int

    def entries(self) -> list[dict[str, Any]]:
        """TEI's ``/embed_sparse`` entries ``[{"index", "value"}, ...]``."""
        return [{"index": index, "value": value}
                for index, value in zip(self.indices.tolist(), self.values.tolist(), strict=True)]

    def dense(self) -> np.ndarray:
        """The whole vocabulary-sized vector (zeros included)."""
        vector = np.zeros(self.dimension, dtype=np.float32)
        vector[self.indices] = self.values
        return vector


def _is_masked_lm(source: str, revision: str | None, module: dict) -> bool:
    """Whether ``module`` (a modules.json entry) is a transformer giving MLM logits."""
    kind = module.get("type", "")
    if kind.endswith(".MLMTransformer"):
        return True
    if not kind.endswith(".Transformer"):
        return False
    folder = f"{module['path']}/" if module.get("path") else ""
    config = read_json(source, f"{folder}sentence_bert_config.json", revision) or {}
    return isinstance(config, dict) and config.get("transformer_task") == "fill-mask"


def splade_config(source: str, revision: str | None = None) -> SpladeConfig | None:
    """The SPLADE settings of a sentence-transformers ``SparseEncoder`` directory (local or
    Hub id), or None if ``source`` is not a sparse encoder.

    Raises:
        ValueError: a sparse encoder this module does not reproduce, naming the module
            (anything but an MLM transformer at the model's root followed by SpladePooling),
            or a SpladePooling setting sentence-transformers does not define.
    """
    modules = read_json(source, "modules.json", revision) or []
    st_config = read_json(source, "config_sentence_transformers.json", revision) or {}
    if (not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules)
            or not isinstance(st_config, dict)):
        raise ValueError(f"{source}: modules.json or config_sentence_transformers.json is "
                         "malformed")
    types = [str(module.get("type", "")) for module in modules]
    sparse = st_config.get("model_type") == "SparseEncoder"
    if not sparse and not any(kind.endswith(".SpladePooling") for kind in types):
        return None
    served = "an MLM transformer at the model's root, then SpladePooling"
    if not modules:
        raise ValueError(f"{source}: a SparseEncoder without modules.json; served: {served}")
    first = modules[0]
    if not _is_masked_lm(source, revision, first):
        raise ValueError(f"{source}: sparse encoder module {types[0]!r} is not supported "
                         f"(inference-free Router/SparseStaticEmbedding models are not); "
                         f"served: {served}")
    if first.get("path"):
        raise ValueError(f"{source}: the MLM transformer is in {first['path']!r}, not at the "
                         f"model's root; served: {served}")
    for kind in types[1:]:
        if not kind.endswith(".SpladePooling"):
            raise ValueError(f"{source}: sparse encoder module {kind!r} is not supported "
                             f"(SparseAutoEncoder heads are not); served: {served}")
    if len(modules) != 2:
        raise ValueError(f"{source}: {types[0]!r} needs one SpladePooling after it, not "
                         f"{len(modules) - 1}; served: {served}")
    pooling = read_json(source, f"{modules[1]['path']}/config.json", revision) or {}
    if not isinstance(pooling, dict):
        raise ValueError(f"{source}: the SpladePooling config is not a JSON object")
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy not in STRATEGIES or activation not in ACTIVATIONS:
        raise ValueError(f"{source}: SpladePooling {strategy!r}/{activation!r} is not "
                         f"supported; pooling_strategy: {STRATEGIES}, activation_function: "
                         f"{ACTIVATIONS}")
    max_active_dims = st_config.get("max_active_dims")
    if max_active_dims is not None and (not isinstance(max_active_dims, int)
                                        or max_active_dims <= 0):
        raise ValueError(f"{source}: max_active_dims {max_active_dims!r} is not a positive "
                         "integer")
    return SpladeConfig(strategy, activation, max_active_dims)


def splade_pool(logits: Any, mask: Any, config: SpladeConfig) -> Any:
    """``SpladePooling.forward`` of right-padded MLM ``logits`` ``[batch, seq, vocab]``
    (then ``max_active_dims``, as ``SparseEncoder.encode`` applies it): ``[batch, vocab]``,
    in the logits' dtype."""
    values = (logits * mask.unsqueeze(-1).to(logits.dtype)).relu_().log1p_()
    if config.activation == "log1p_relu":
        values = values.log1p_()
    pooled = values.amax(dim=1) if config.pooling_strategy == "max" else values.sum(dim=1)
    k = config.max_active_dims
    if k is not None and k < pooled.shape[-1]:
        import torch

        top = pooled.abs().topk(k, dim=-1).indices
        pooled = torch.zeros_like(pooled).scatter_(-1, top, pooled.gather(-1, top))
    return pooled


def sparse_rows(pooled: Any) -> list[SparseVector]:
    """Each row of ``pooled`` (``[batch, vocab]``) as its non-zero entries."""
    matrix = pooled.float().cpu().numpy()
    rows = []
    for row in matrix:
        indices = np.flatnonzero(row).astype(np.int32)
        rows.append(SparseVector(indices, row[indices], int(matrix.shape[1])))
    return rows


def is_sparse_answer(answers: list[Any]) -> bool:
    """Whether ``answers`` (one per text) are sparse embeddings: :class:`SparseVector`\\ s,
    or their entries lists (what a SPLADE model's answers become at the ingress)."""
    return any(isinstance(answer, SparseVector)
               or (isinstance(answer, list) and (not answer or isinstance(answer[0], dict)))
               for answer in answers)


def splade_refusal(params: Any) -> str | None:
    """Why a SPLADE model cannot answer a request with ``params`` (feature-extraction's, or
    a view's), or None. As TEI: no token embeddings and no normalization of sparse vectors."""
    if getattr(params, "token_embeddings", False):
        return "token embeddings (/embed_all) are not available for SPLADE models"
    if getattr(params, "normalize", None):
        return ("normalize is not available for SPLADE models: /embed_sparse answers their "
                "sparse vectors (normalize: false gives the dense vocabulary-sized vector)")
    if getattr(params, "dimensions", None) is not None:
        return "dimensions is not available for SPLADE models (a dimension is a token)"
    if getattr(params, "precision", "float32") != "float32":
        return "precision is not available for SPLADE models"
    return None
