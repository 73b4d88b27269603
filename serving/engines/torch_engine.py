"""The PyTorch engine: a Hugging Face model loaded with ``from_pretrained`` on the CPU, CUDA
or MPS, optionally quantized (int8, CPU) or compiled (CUDA)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.engines.base import Engine
from serving.models import resolve_model_source
from serving.tasks import task_class

if TYPE_CHECKING:
    from serving.load_settings import LoadSettings

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
# Architectures whose activations overflow float16's range (they were trained in bfloat16;
# T5's feed-forward outputs exceed 65504): 'auto' never gives them float16.
FP16_UNSAFE = frozenset({"t5", "mt5", "umt5", "longt5", "switch_transformers"})


def select_device(requested: str, cuda_available: bool, mps_available: bool = False) -> str:
    """The device a replica should use; 'auto' prefers CUDA, and a missing accelerator
    falls back to the CPU with a log line instead of failing."""
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested == "cuda" and not cuda_available:
        logger.warning("device 'cuda' requested but no CUDA device is visible; using the CPU")
        return "cpu"
    if requested == "mps" and not mps_available:
        logger.warning("device 'mps' requested but MPS is unavailable; using the CPU")
        return "cpu"
    return requested


def select_dtype(requested: str, device: str, model_type: str | None = None,
                 bf16_supported: bool = True) -> str:
    """The dtype a replica should use.

    'auto' is float16 on CUDA, except for the architectures of :data:`FP16_UNSAFE`, which
    get bfloat16 (float32 on GPUs without bfloat16, before Ampere); float32 elsewhere. An
    explicit choice is kept, except float16 on the CPU (slow or missing half-precision
    kernels) and bfloat16 on a GPU without it, which both become float32 with a warning.

    Args:
        requested: ``ModelSpec.dtype``.
        device: what :func:`select_device` chose.
        model_type: the model config's ``model_type`` (e.g. ``"bert"``, ``"t5"``).
        bf16_supported: whether the CUDA device computes in bfloat16
            (``torch.cuda.is_bf16_supported()``); ignored off CUDA.
    """
    fp16_unsafe = model_type in FP16_UNSAFE
    if requested == "auto":
        if device != "cuda":
            return "float32"
        if not fp16_unsafe:
            return "float16"
        return "bfloat16" if bf16_supported else "float32"
    if device == "cpu" and requested == "float16":
        logger.warning("float16 is slow or unsupported on the CPU; using float32")
        return "float32"
    if device == "cuda" and requested == "bfloat16" and not bf16_supported:
        logger.warning("bfloat16 requested but this GPU has no bfloat16 support; using float32")
        return "float32"
    if device == "cuda" and requested == "float16" and fp16_unsafe:
        logger.warning("%s models are known to overflow in float16 (NaN or inf outputs); "
                       "prefer dtype bfloat16 or float32", model_type)
    return _DTYPES[requested]


def to_device(array: np.ndarray, device: str) -> Any:
    """``array`` as a tensor on ``device``.

    On CUDA the host copy is pinned (page-locked) and copied with ``non_blocking=True``,
    so the transfer is queued on the current stream instead of stalling this thread; on
    the CPU the tensor shares the array's memory (no copy, no pinning, which would only
    cost a page-locked allocation there).
    """
    import torch

    tensor = torch.from_numpy(array)
    if device == "cpu":
        return tensor
    if device.startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def maybe_compile(model: Any, device: str, enabled: bool) -> Any:
    """``torch.compile`` the model for CUDA replicas when ``enabled``; unchanged elsewhere.

    Compiled with dynamic shapes and without CUDA graphs: batches differ in size and
    length (length buckets), and CUDA graphs would record one graph per distinct shape.
    Compiling happens lazily, on the first batches (seconds each). On other devices this
    is a no-op with a log line: CPU compiling needs a C++ toolchain at run time and its
    gain was not measured.
    """
    if not enabled:
        return model
    if device != "cuda":
        logger.warning("compile: torch.compile is applied on CUDA only; running %s eagerly",
                       device)
        return model
    import torch

    logger.info("compile: torch.compile(dynamic=True) on %s (compiles on first batches)",
                device)
    return torch.compile(model, dynamic=True)


def quantize_int8(model: Any, device: str) -> Any:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized
    per batch): faster on CPUs, slightly different numbers. CPU only; elsewhere the model is
    returned unchanged with a log line."""
    import torch

    if device != "cpu":
        logger.warning("quantize: int8 is CPU-only; serving %s unquantized", device)
        return model
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Per-channel weight scales: measured closer to float32 than per-tensor ones (MiniLM
    # cosine 0.973 vs 0.945 on the benchmark's texts) for about the same speed.
    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                            dtype=torch.qint8)


class TorchEngine(Engine):
    """The model run by PyTorch in eager mode (or ``torch.compile``d on CUDA)."""

    name = "torch"

    def __init__(self, model: Any, device: str, dtype: str, call: Any = None) -> None:
        super().__init__(model, device, dtype)
        self._call = call if call is not None else model  # the compiled model, if any

    @classmethod
    def load(cls, settings: LoadSettings) -> TorchEngine:
        import torch
        import transformers

        if settings.num_threads:
            torch.set_num_threads(settings.num_threads)
        device = select_device(
            settings.device, torch.cuda.is_available(), torch.backends.mps.is_available()
        )
        source = resolve_model_source(settings.model)
        config = transformers.AutoConfig.from_pretrained(
            source, revision=settings.revision, trust_remote_code=settings.trust_remote_code,
        )
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        dtype = select_dtype(settings.dtype, device, config.model_type, bf16)
        task = task_class(settings.task)
        model_class = task.model_class_for(source, settings.revision, settings.pooling)
        model = getattr(transformers, model_class).from_pretrained(
            source, config=config, revision=settings.revision, dtype=getattr(torch, dtype),
            trust_remote_code=settings.trust_remote_code, use_safetensors=True,
        )
        model.to(device).eval()
        if settings.quantize == "int8":
            model = quantize_int8(model, device)
        if settings.compile and task.generates:
            logger.warning("compile: not applied to %s (generate() runs the eager model)",
                           task.name)
            return cls(model, device, dtype)
        return cls(model, device, dtype, maybe_compile(model, device, settings.compile))

    def forward(self, batch: dict[str, Any]) -> Any:
        return self._call(**batch)

    # --- PEFT LoRA adapters of this model (model pools of adapters) -------------------

    def add_adapter(self, name: str, source: str) -> None:
        """Load the PEFT adapter at ``source`` under ``name``; batch rows name theirs
        (``adapter_names``), so rows of different adapters share a forward pass."""
        from peft import PeftModel

        if not isinstance(self._call, PeftModel):
            self._call = PeftModel.from_pretrained(self.model, source, adapter_name=name,
                                                   is_trainable=False).eval()
        elif name not in self._call.peft_config:  # a kept last adapter (below) is loaded
            self._call.load_adapter(source, adapter_name=name, is_trainable=False)

    def remove_adapter(self, name: str) -> None:
        """Free adapter ``name``'s weights (PEFT cannot load another after removing its
        last adapter: that one is kept, and reused if it is added again)."""
        adapters = getattr(self._call, "peft_config", {})
        if name in adapters and len(adapters) > 1:
            self._call.delete_adapter(name)

    def health(self) -> None:
        """Raise if a weight holds NaN or infinite values."""
        import torch

        # One sum per weight (in float32, so large half-precision weights cannot overflow):
        # a NaN or an infinity anywhere makes it non-finite. ~14x cheaper than an
        # element-wise isfinite() scan, which took ~150 ms of a replica's core for MiniLM at
        # every health check (every 10 s).
        with torch.inference_mode():
            named = [(name, parameter) for name, parameter in self.model.named_parameters()
                     if parameter.is_floating_point()]
            if not named:
                return
            sums = torch.stack([parameter.sum(dtype=torch.float32) for _, parameter in named])
            bad = (~torch.isfinite(sums)).nonzero()
            if len(bad):
                raise RuntimeError(f"weight {named[int(bad[0])][0]} holds NaN or infinite values")
