"""The pool deployment: many models of one task on one set of replicas (``pool:``).

Each replica loads a member (weights and tokenizer) on its first request and holds at
most ``max_models_per_replica`` of them; Serve's multiplexing (``serve.multiplexed``)
unloads the least recently used one for a new one and routes requests to a replica that
already holds their member (the ingress names it: ``multiplexed_model_id``).

What this adds to Serve's multiplexing:
- **Nothing outside the pool loads.** The member is looked up (``serving.pools``) before
  Serve's loader runs, which unloads a model *before* it loads the next: a bad name must
  neither load nor unload anything.
- **An unload fails no request.** Serve drops the unloaded model at once; requests that
  hold it finish, then its batch queue is stopped so its memory is freed.
- **Loads off the event loop**, so the other members' batches keep running meanwhile.
- **One batch queue per member** (``Colocated``): a batch holds one model's texts, and the
  members' batches take turns.
- **ONNX Runtime without slow cold loads** (``engine: onnx``): a member loads in PyTorch
  and answers at once; its ONNX export then runs in the background, one member at a time,
  and its passes switch to ONNX Runtime when the export is done and checked.
- **Pools of PEFT adapters** (``model`` set): the base model is loaded once per replica and
  the members are LoRA adapters on it; one batch queue, whose passes mix the rows of
  several adapters (PEFT's ``adapter_names``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.metrics import ModelMetrics, PoolMetrics
from deployments.model import Colocated
from serving.config import ModelSpec
from serving.engines import ENGINES
from serving.engines.onnx_engine import OnnxEngine, accelerate
from serving.errors import ServingError, UnavailableError
from serving.pools import MemberLabels, PoolMembers
from serving.tasks import Slice

logger = logging.getLogger("ray.serve")


class _Loaded:
    """A member as Serve's multiplexer holds it. Serve calls ``__del__`` (in a thread) when
    it unloads it; the model is released once its last request has finished."""

    def __init__(self, member: str, model: Colocated, on_idle: Any) -> None:
        self.member, self.model = member, model
        self.in_flight = 0
        self.unloaded = False
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()

    @contextlib.contextmanager
    def use(self) -> Any:
        self.in_flight += 1
        try:
            yield self.model
        finally:
            self.in_flight -= 1
            if self.unloaded and not self.in_flight:
                self._on_idle(self)

    def __del__(self) -> None:  # Serve's unload hook; also the garbage collector's
        if self.unloaded:
            return
        self.unloaded = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            self._loop.call_soon_threadsafe(self._retire_if_idle)

    def _retire_if_idle(self) -> None:
        if not self.in_flight:
            self._on_idle(self)


@serve.deployment
class PoolModel:
    """The replicas of one model pool."""

    async def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._members = PoolMembers(spec.name, spec.pool, spec.members, spec.adapters)
        self._batch_settings = spec.batch_settings()
        self._model_metrics = ModelMetrics(spec.name, spec.task)
        self._metrics = PoolMetrics(spec.name, spec.task)
        self._labels = MemberLabels()
        self._held: dict[str, _Loaded] = {}  # what Serve's multiplexer holds, by member
        # engine onnx/openvino: members load in PyTorch, then are exported one at a time.
        kind = ENGINES[spec.engine]
        self._export_kind = (kind if issubclass(kind, OnnxEngine) and not spec.adapters
                             else None)
        self._threads = spec.load_settings_fields()["num_threads"]
        self._exporting = asyncio.Lock()
        self._exports: set[asyncio.Task] = set()
        # A pool of adapters: the base model, loaded once; members are adapters on it.
        self._base: Colocated | None = None
        if spec.adapters:
            self._base = await asyncio.to_thread(Colocated, spec.load_settings(),
                                                 self._model_metrics)

        async def load(member: str) -> _Loaded:  # a function: Serve keeps its state on it
            return await self._load_member(member)

        self._load = serve.multiplexed(
            max_num_models_per_replica=spec.max_models_per_replica)(load)
        for member in spec.preload[: spec.max_models_per_replica]:
            await self._load(member)

    def reconfigure(self, user_config: dict) -> None:
        """Batch settings, live, for the members held now and those loaded later."""
        self._batch_settings = dict(user_config)
        for model in {id(m): m for m in [self._base, *(h.model for h in self._held.values())]
                      if m is not None}.values():
            model.reconfigure(self._batch_settings)

    def _adapter(self, member: str) -> str | None:
        return member if self._base is not None else None

    async def _load_member(self, member: str) -> _Loaded:
        started = time.perf_counter()
        try:
            source = self._members.source(member)
            if self._base is not None:  # an adapter: small, loaded on the loop (no forward
                model = self._base      # runs meanwhile), rows of every adapter share passes
                model.add_adapter(member, source)
            else:
                settings = self._spec.member_settings(source)
                if self._export_kind:
                    settings = settings.model_copy(update={"engine": "torch"})
                model = await asyncio.to_thread(Colocated, settings, self._model_metrics)
        except Exception as exc:
            self._metrics.loaded(self._labels(member), None, len(self._held))
            logger.exception("pool %s: loading %s failed", self._spec.name, member)
            if isinstance(exc, ServingError):
                raise
            raise UnavailableError(
                f"{self._spec.name}/{member} could not be loaded: {exc}") from None
        if self._base is None:
            model.reconfigure(self._batch_settings)
        loaded = _Loaded(member, model, self._retire)
        self._held[member] = loaded
        seconds = time.perf_counter() - started
        self._metrics.loaded(self._labels(member), seconds, len(self._held))
        logger.info("pool %s: loaded %s in %.2f s", self._spec.name, member, seconds)
        if self._export_kind:
            export = asyncio.create_task(self._export_onnx(loaded))
            self._exports.add(export)
            export.add_done_callback(self._exported)
            self._metrics.exporting(len(self._exports))
        return loaded

    async def _export_onnx(self, loaded: _Loaded) -> None:
        """Switch a member's passes to the exported engine (ONNX Runtime or OpenVINO) once
        its export (in a thread, one member at a time) is done; a failed export leaves it
        on PyTorch, with a warning."""
        async with self._exporting:
            if loaded.unloaded:
                return
            started = time.perf_counter()
            torch_engine = loaded.model.engine
            engine = await asyncio.to_thread(accelerate, torch_engine, self._threads, True,
                                             self._export_kind)
        if engine is not torch_engine and not loaded.unloaded:
            loaded.model.use_engine(engine)
            logger.info("pool %s: %s runs on %s (exported in %.2f s)", self._spec.name,
                        loaded.member, engine.runtime, time.perf_counter() - started)

    def _exported(self, export: asyncio.Task) -> None:
        self._exports.discard(export)
        self._metrics.exporting(len(self._exports))

    def _retire(self, loaded: _Loaded) -> None:
        """An unloaded member with no request left: stop its batch queue, forget it."""
        if self._held.get(loaded.member) is loaded:
            del self._held[loaded.member]
        if self._base is not None:
            if loaded.member not in self._held:  # not loaded again meanwhile
                self._base.remove_adapter(loaded.member)
        else:
            loaded.model.stop_batching()
        self._metrics.unloaded(self._labels(loaded.member), len(self._held))

    @contextlib.asynccontextmanager
    async def _member(self, member: str) -> AsyncIterator[Colocated]:
        self._members.source(member)  # ModelNotFoundError before anything loads or unloads
        loaded = await self._load(member)
        with loaded.use() as model:  # no await between the load and this: never unloaded
            yield model

    # --- what the pool's pipeline client calls (deployments.pool_pipelines.PoolPipeline) ---

    async def infer_texts(
        self, member: str, texts: list[str], text_pairs: list[str] | None, truncate: bool,
        slices: list[Slice], with_offsets: bool = False,
        windows: list[tuple[int | None, int | None]] | None = None,
        truncation_side: str = "right",
    ) -> list[list[Any]]:
        """Answers of one member for several requests (as ``ColocatedModel.infer_texts``)."""
        async with self._member(member) as model:
            return await model.infer_texts(texts, text_pairs, truncate, slices, with_offsets,
                                           windows, self._adapter(member), truncation_side)

    async def infer_ids(self, member: str, ids: list[list[int]], slices: list[Slice],
                        truncate: bool = True, add_special_tokens: bool = True,
                        names: list[str] | None = None, truncation_side: str = "right",
                        ) -> tuple[list[list[Any]], int]:
        """Answers of one member for token-id inputs (``Tokenizing.encode_ids``'s options),
        and the tokens it read."""
        async with self._member(member) as model:
            encoded = await model.encode_ids(ids, truncate, add_special_tokens, names,
                                             truncation_side)
            return (await model.infer_many(encoded, slices, self._adapter(member)),
                    encoded.num_tokens)

    async def decode(self, member: str, ids: list[list[int]], skip_special_tokens: bool,
                     names: list[str] | None = None) -> list[str]:
        """TEI ``/decode`` with one member's tokenizer."""
        async with self._member(member) as model:
            return await model.decode(ids, skip_special_tokens, names)

    async def processed_tokens(self, member: str, texts: list[str]) -> int:
        async with self._member(member) as model:
            return await model.processed_tokens(texts)

    async def token_details(self, member: str, texts: list[str], add_special_tokens: bool
                            ) -> list[list[dict]]:
        async with self._member(member) as model:
            return await model.token_details(texts, add_special_tokens)

    async def details(self, member: str) -> dict:
        """A member's ``/info`` details (loading it)."""
        async with self._member(member) as model:
            return await model.details()

    def members(self) -> dict:
        """Every member of the pool, which this replica holds (most recent last) and the
        engine each of those runs on now."""
        return {"members": self._members.ids(), "replica": self._replica_id(),
                "loaded": list(self._held),
                "engines": {member: loaded.model.engine.name
                            for member, loaded in self._held.items()}}

    @staticmethod
    def _replica_id() -> str:
        return serve.get_replica_context().replica_id.unique_id
