"""How a model is loaded: the typed, frozen settings every replica of a model starts from.

:class:`LoadSettings` holds the fields of a ``models:`` entry that decide how a model is
*loaded*; changing one of them restarts (rolls) the replicas. ``ModelSpec`` extends it with
the batching and deployment fields, and ``ModelSpec.load_settings()`` hands the replicas
exactly these fields, defaults resolved, so nothing downstream repeats a default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.models import check_model_reference
from serving.tasks import canonical_task, task_class


class Strict(BaseModel):
    """Unknown fields are refused and instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationSettings(Strict):
    """How a text-generation (decoder-only) model schedules its requests; other tasks
    ignore it."""

    scheduler: Literal["continuous", "static"] = Field(
        "continuous", description="'continuous': requests join and leave the running batch "
        "at every decoding step, each with its own settings (serving/decoding/); beam search "
        "and models whose cache or generation config it cannot serve fall back to 'static', "
        "with a log line. 'static': one generate() per group of requests with identical "
        "settings (a long request holds its group until it ends).",
    )
    max_batch_total_tokens: int = Field(
        16384, ge=64, le=100_000_000, description="KV cache budget in tokens per replica: a "
        "request joins only if the padded cache (rows x the widest it can grow to) stays "
        "within it; a request that cannot fit even alone is refused with 422.",
    )
    max_batch_prefill_tokens: int = Field(
        2048, ge=16, le=10_000_000, description="Most padded prompt tokens prefilled in one "
        "step (longer waits for running sequences stay short); one longer prompt goes alone. "
        "2048 measured best on 2 cores (docs/performance.md#generation).",
    )
    max_waiting: int = Field(
        1024, ge=1, le=1_000_000, description="Requests waiting to join per replica; beyond, "
        "new ones are refused with 429.",
    )


def _engine_names() -> list[str]:
    from serving.engines import ENGINES  # the registry imports this module's type

    return list(ENGINES)


class LoadSettings(Strict):
    """The settings that decide how a model is loaded (the deployments' init args)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="URL-safe unique name; the model answers on POST /models/{name}.",
    )
    task: str = Field(description="Pipeline task id, e.g. text-classification.")
    model: str = Field(
        min_length=1, description="Hub id, embedded model id, or local model directory."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="'auto' uses CUDA when the replica has a GPU, else the CPU."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto' is float16 on CUDA (bfloat16, or float32 without it, for "
        "architectures that overflow in float16, e.g. T5) and float32 elsewhere; float16 on "
        "the CPU becomes float32.",
    )
    compile: bool = Field(
        False, description="torch.compile the model (dynamic shapes, no CUDA graphs) on CUDA "
        "replicas; first batches are slow while it compiles. A logged no-op on the CPU and "
        "for generating tasks.",
    )
    engine: str = Field(
        "torch", description="What runs the forward passes (serving/engines/): 'torch'; "
        "'onnx': encoder models are exported to ONNX when a replica loads and small passes "
        "run in ONNX Runtime (CPU only; less fixed cost per pass, same answers to ~1e-6; "
        "falls back to PyTorch with a warning if the export fails); 'openvino': the same "
        "export run by OpenVINO's CPU runtime (float32).",
    )
    quantize: Literal["none", "int8"] = Field(
        "none", description="'int8': dynamic int8 quantization of the Linear layers (CPU "
        "only; faster, answers no longer bit-identical to transformers.pipeline).",
    )
    max_input_tokens: int | None = Field(
        None, ge=1, description="Cap on tokens per input; default is the model window."
    )
    num_threads: int | None = Field(
        None, ge=1, description="Torch threads per model replica; default max(1, num_cpus)."
    )
    colocate_tokenizer: bool = Field(
        False, description="Tokenize inside the model replicas instead of a tokenizer "
        "deployment (one hop less per request; tokenization then shares the model's CPUs).",
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code from the Hub.")
    pooling: Literal[
        "auto", "none", "cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"
    ] = Field(
        "auto",
        description="feature-extraction pooling; 'auto' reads the sentence-transformers "
        "config and returns token embeddings (like transformers.pipeline) without one.",
    )
    normalize: bool | None = Field(
        None, description="L2-normalize embeddings; default from the sentence-transformers config."
    )

    generation: GenerationSettings = Field(
        default_factory=GenerationSettings,
        description="text-generation: continuous batching and its KV budget.",
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        return canonical_task(task)

    @field_validator("model")
    @classmethod
    def _model_exists(cls, model: str | None) -> str | None:
        if model is not None:  # None: a model pool (see ModelSpec)
            check_model_reference(model)
        return model

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str) -> str:
        if engine not in _engine_names():
            raise ValueError(f"unknown engine {engine!r}; supported: {', '.join(_engine_names())}")
        return engine

    @model_validator(mode="after")
    def _engine_runs_this(self) -> LoadSettings:
        from serving.engines import ENGINES

        engine = ENGINES[self.engine]
        if self.quantize != "none" and not engine.quantizes:
            raise ValueError(f"engine {self.engine} and quantize {self.quantize} do not "
                             "combine: choose one")
        refusal = engine.refusal(task_class(self.task), self.device)
        if refusal is not None:
            raise ValueError(f"engine {self.engine} cannot serve this model: {refusal}")
        return self
