"""The configuration contract: the ``args`` of ``graphs.app:build_app``.

Every field has a type, a default and a description; a bad config fails at build
time with pydantic's message, which names the offending field (e.g. ``models.0.task``).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from serving.errors import ModelNotFoundError
from serving.ingress_settings import IngressSettings
from serving.load_settings import LoadSettings, Strict
from serving.pools import PoolMembers, check_pool
from serving.tasks import task_class
from serving.tasks.embedding_views import VIEWS

__all__ = ["AppConfig", "AutoscalingSettings", "IngressSettings", "ModelSpec", "ViewSpec"]


class AutoscalingSettings(Strict):
    """Passed to Ray Serve's ``autoscaling_config`` for the model deployment."""

    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle.")
    max_replicas: int = Field(2, ge=1, description="Upper bound on replicas.")
    target_ongoing_requests: float = Field(
        2, gt=0, description="Ongoing calls per replica that autoscaling aims for. The "
        "ingress merges concurrent requests into one model call, so this counts merged "
        "calls: a few (one batch computing while the next gathers), not clients.",
    )
    upscale_delay_s: float = Field(5, ge=0, description="Sustained load before adding replicas.")
    downscale_delay_s: float = Field(30, ge=0, description="Sustained idleness before removing.")
    metrics_interval_s: float = Field(
        10, gt=0, description="How often load is reported to the autoscaler (Ray's default)."
    )
    look_back_period_s: float = Field(
        30, gt=0, description="Window over which the reported load is averaged (Ray's default)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class ViewSpec(Strict):
    """An extra endpoint computed from a sentence embedding model's vectors, served by that
    model's replicas (see ``serving/tasks/embedding_views.py``)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="URL-safe unique name; answers on POST /models/{name}.",
    )
    task: str = Field(description="One of the embedding views' tasks.")

    @field_validator("task")
    @classmethod
    def _known_view(cls, task: str) -> str:
        if task not in VIEWS:
            raise ValueError(f"unknown view task {task!r}; supported: {', '.join(sorted(VIEWS))}")
        return task


# Ray's own resources, requested through their own fields (num_cpus, num_gpus).
_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})

class ModelSpec(LoadSettings):
    """One served model (a tokenizer deployment feeding a batched model deployment), or a
    pool of models of one task on shared replicas (``pool``/``members``).

    Its :class:`LoadSettings` fields restart the replicas when changed; the batch settings
    are applied live (``user_config``); the rest shapes the deployments."""

    model: str | None = Field(  # type: ignore[assignment]  # optional here: pools
        None, min_length=1, description="Hub id, embedded model id, or local model directory "
        "(required unless the entry is a pool; in a pool of adapters, their base model).",
    )
    pool: str | None = Field(
        None, description="A model pool: a directory whose every subdirectory is a model of "
        "this task, served as <name>/<subdirectory> by one set of replicas that load models "
        "on first use (see docs/pools.md). With `model` set, the members are PEFT LoRA "
        "adapters of that base model.",
    )
    members: list[str] = Field(
        default_factory=list, description="Pool members besides (or instead of) the pool "
        "directory: local model directories, served as <name>/<directory name>, or Hub ids, "
        "served as <name>/<org>/<model>.",
    )
    preload: list[str] = Field(
        default_factory=list, description="Pool members (ids) each replica loads at start.",
    )
    max_models_per_replica: int = Field(
        4, ge=1, le=1024, description="Pool members one replica holds at once; loading "
        "another unloads the least recently used.",
    )

    max_inputs_per_request: int = Field(
        256, ge=1, le=10_000, description="Most texts one request may carry."
    )
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="Most texts per forward pass (live-updatable)."
    )
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=5, description="How long a batch waits to fill (live-updatable)."
    )
    length_buckets: bool = Field(
        True, description="Run a batch's texts of similar length together instead of padding "
        "all to the longest (live-updatable).",
    )
    num_replicas: int = Field(1, ge=1, description="Model replicas when autoscaling is off.")
    autoscaling: AutoscalingSettings | None = Field(None, description="Autoscale the model.")
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Per-replica concurrency; default allows several full batches."
    )
    max_queued_requests: int = Field(
        2048, ge=-1, description="Requests queued per handle before refusing (-1: unbounded)."
    )
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per model replica.")
    num_gpus: float = Field(0, ge=0, description="GPUs per model replica; fractions share one.")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per model replica, e.g. {model_node: 1}: the "
        "replicas only start on nodes started with that resource (`ray start --resources`).",
    )
    in_ingress: bool = Field(
        False, description="Load this model into every ingress replica and answer it there "
        "(it tokenizes itself): no Serve hop per request, the fastest way in for one model "
        "that gets most of the traffic. The ingress's num_replicas then sets its replicas, "
        "and this model's num_cpus / num_gpus are added to each ingress replica's.",
    )
    tokenizer_replicas: int = Field(1, ge=1, description="Tokenizer replicas.")
    tokenizer_num_cpus: float = Field(0.25, ge=0, description="CPUs per tokenizer replica.")
    views: list[ViewSpec] = Field(
        default_factory=list,
        description="feature-extraction only: endpoints computed from this model's sentence "
        "embeddings (text-ranking, zero-shot-classification, summarization).",
    )
    matryoshka_dimensions: list[int] | None = Field(
        None, min_length=1, description="feature-extraction only: the embedding sizes the "
        "model was trained to be cut to (Matryoshka training, e.g. sentence-transformers' "
        "MatryoshkaLoss matryoshka_dims). A request's `dimensions` (OpenAI, TEI, Inference "
        "API) is refused unless this is set, and must be at least the smallest size listed. "
        "Not detected from the model's files.",
    )

    @field_validator("resources")
    @classmethod
    def _custom_resources(cls, resources: dict[str, float]) -> dict[str, float]:
        for name, quantity in resources.items():
            if not name or name in _BUILTIN_RESOURCES:
                raise ValueError(f"resource {name!r}: use num_cpus / num_gpus, or a custom name")
            if quantity <= 0:
                raise ValueError(f"resource {name!r} must be > 0, got {quantity}")
        return resources

    @model_validator(mode="after")
    def _views_need_embeddings(self) -> ModelSpec:
        if self.views and self.task != "feature-extraction":
            raise ValueError("views are only available on feature-extraction models")
        return self

    @model_validator(mode="after")
    def _matryoshka_sizes(self) -> ModelSpec:
        if self.matryoshka_dimensions is None:
            return self
        if self.task != "feature-extraction":
            raise ValueError("matryoshka_dimensions is for feature-extraction models")
        if min(self.matryoshka_dimensions) < 1:
            raise ValueError("matryoshka_dimensions: sizes must be at least 1")
        return self

    @model_validator(mode="after")
    def _in_ingress(self) -> ModelSpec:
        if not self.in_ingress:
            return self
        if self.is_pool or task_class(self.task).generates:
            raise ValueError("in_ingress is for single encoder models, not pools or models "
                             "that generate text")
        if self.autoscaling is not None or self.num_replicas != 1:
            raise ValueError("an in_ingress model has the ingress's replicas: set "
                             "ingress.num_replicas, not this model's num_replicas/autoscaling")
        return self

    @model_validator(mode="after")
    def _model_or_pool(self) -> ModelSpec:
        if not self.is_pool:
            if self.model is None:
                raise ValueError("set `model` (or `pool`/`members` for a model pool)")
            if self.preload:
                raise ValueError("preload is for model pools (`pool`/`members`)")
            return self
        if task_class(self.task).generates:
            raise ValueError(f"pools serve encoder tasks; {self.task} generates text")
        if self.views:
            raise ValueError("views are not available on model pools")
        if self.adapters and (self.engine != "torch" or self.quantize != "none"):
            raise ValueError("a pool of adapters runs with engine torch, not quantized")
        check_pool(self.name, self.pool, self.members, self.adapters)
        members = PoolMembers(self.name, self.pool, self.members, self.adapters)
        for member in self.preload:
            try:
                members.source(member)
            except ModelNotFoundError as exc:
                raise ValueError(f"preload: {exc.message}") from None
        return self

    @property
    def is_pool(self) -> bool:
        """Whether this entry is a model pool."""
        return self.pool is not None or bool(self.members)

    @property
    def adapters(self) -> bool:
        """Whether this entry is a pool of PEFT adapters of one base model (``model``)."""
        return self.is_pool and self.model is not None

    def member_settings(self, source: str) -> LoadSettings:
        """The load settings of one pool member whose files are at ``source``."""
        fields = self.load_settings_fields()
        return LoadSettings.model_validate({**fields, "model": source})

    def load_settings(self) -> LoadSettings:
        """The settings that decide how the model is loaded (the deployments' init args),
        with ``num_threads`` resolved from ``num_cpus`` when unset."""
        return LoadSettings.model_validate(self.load_settings_fields())

    def load_settings_fields(self) -> dict:
        fields = self.model_dump(include=set(LoadSettings.model_fields))
        fields["num_threads"] = self.num_threads or max(1, round(self.num_cpus))
        return fields

    def batch_settings(self) -> dict:
        """The settings applied live through ``user_config``."""
        return {"max_batch_size": self.max_batch_size,
                "batch_wait_timeout_s": self.batch_wait_timeout_s,
                "length_buckets": self.length_buckets}


class AppConfig(Strict):
    """The ``args`` of ``graphs.app:build_app`` in ``serve_config.yaml``."""

    models: list[ModelSpec] = Field(min_length=1, description="The served models.")
    ingress: IngressSettings = Field(
        default_factory=IngressSettings,
        description="The FastAPI ingress: limits, admission, timeouts, retries, API key, CORS.",
    )

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        seen: set[str] = set()
        for name in (n for spec in models for n in [spec.name, *(v.name for v in spec.views)]):
            if name in seen:
                raise ValueError(f"duplicate model name {name!r}")
            seen.add(name)
        return models

    def ingress_resources(self) -> dict[str, float]:
        """What each ingress replica reserves: its own CPUs plus those (and GPUs, custom
        resources) of the ``in_ingress`` models it holds."""
        need = {"CPU": self.ingress.num_cpus, "GPU": 0.0}
        for spec in self.models:
            if spec.in_ingress:
                for key, value in {"CPU": spec.num_cpus, "GPU": spec.num_gpus,
                                   **spec.resources}.items():
                    need[key] = need.get(key, 0.0) + value
        return need

    def model(self, name: str) -> ModelSpec | None:
        """The spec named ``name``, or None."""
        return next((spec for spec in self.models if spec.name == name), None)

    def endpoint(self, name: str) -> tuple[ModelSpec, str] | None:
        """The model serving endpoint ``name`` (a model or one of its views) and the task
        the endpoint answers, or None."""
        for spec in self.models:
            if spec.name == name:
                return spec, spec.task
            for view in spec.views:
                if view.name == name:
                    return spec, view.task
        return None
