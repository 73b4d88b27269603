"""The systems the pool benchmark compares, as application ``args`` of
``graphs.app:build_app``: a pool of every member; the same pool holding fewer members at a
time; one member as an ordinary single model; several members as separate single models.
Every model replica runs the same engine, threads and batching, taken from the single-model
app's first model (``serve_config.yaml``): its engine, replicas, CPUs, threads and batching;
separate models get one replica each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.project import default_args

POOL = "customers"
TASK = "text-classification"
# Separate single models each reserve this many CPUs, so that ten fit 2 cores' capacity
# check next to the ingress; each still runs its forward passes on SHAPE's threads.
SEPARATE_NUM_CPUS = 0.1


@dataclass(frozen=True)
class Shape:
    """What every system's model replicas share: engine, replicas, CPUs and threads,
    batching."""

    engine: str
    num_replicas: int
    num_cpus: float
    num_threads: int
    max_batch_size: int
    batch_wait_timeout_s: float

    @classmethod
    def of_app(cls, config: Path, engine: str | None = None) -> Shape:
        """The shape of the first model of the Serve config file ``config`` (``engine``
        in place of its engine if given)."""
        from serving.config import AppConfig

        spec = AppConfig.model_validate(default_args(config)).models[0]
        threads = spec.load_settings().num_threads
        assert threads is not None  # resolved from num_cpus by load_settings()
        return cls(engine or spec.engine, spec.num_replicas, spec.num_cpus, threads,
                   spec.max_batch_size, spec.batch_wait_timeout_s)

    def settings(self, num_cpus: float | None = None) -> dict:
        """Model entry fields; with ``num_cpus`` given, one replica reserving that many
        CPUs instead of the app's replicas and CPUs."""
        return {"task": TASK, "engine": self.engine,
                "num_replicas": self.num_replicas if num_cpus is None else 1,
                "num_cpus": self.num_cpus if num_cpus is None else num_cpus,
                "num_threads": self.num_threads, "max_batch_size": self.max_batch_size,
                "batch_wait_timeout_s": self.batch_wait_timeout_s}


def pool_app(directory: Path, max_models: int, shape: Shape) -> dict:
    """One pool of every model in ``directory``, ``max_models`` held per replica."""
    return {"models": [{"name": POOL, "pool": str(directory),
                        "max_models_per_replica": max_models, **shape.settings()}]}


def single_app(model: Path, shape: Shape, colocate_tokenizer: bool) -> dict:
    """``model`` as the one model of an app (tokenizer replica apart unless colocated)."""
    return {"models": [{"name": model.name, "model": str(model),
                        "colocate_tokenizer": colocate_tokenizer, **shape.settings()}]}


def separate_app(models: list[Path], shape: Shape) -> dict:
    """Each of ``models`` as a model of its own, tokenizing in its own replica."""
    return {"models": [{"name": model.name, "model": str(model), "colocate_tokenizer": True,
                        **shape.settings(SEPARATE_NUM_CPUS)} for model in models]}
