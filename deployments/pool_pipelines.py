"""Pipeline clients of model pools: the pool's replicas (``PoolPipeline``) and the client
of one of its members (``PoolMemberPipeline``), which the ingress makes as requests name
members. See ``deployments/pipelines.py`` for the contract they implement."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ray.serve.handle import DeploymentHandle, DeploymentResponse

from deployments.calls import Caller
from deployments.pipelines import EncodingPipeline, Pipeline, ids_options
from serving.config import ModelSpec
from serving.errors import ModelNotFoundError
from serving.jobs import Job
from serving.pools import DIRECTORY_MEMBER, HUB_MEMBER
from serving.tasks import Slice, TaskParameters


class PoolPipeline(Pipeline):
    """The replicas of a model pool (``deployments.pool.PoolModel``). The pool answers no
    request itself: :meth:`member` is the client of one of its models."""

    # Member clients kept (each is a few objects; requests create them as they come).
    KEPT_MEMBERS = 1024

    def __init__(self, spec: ModelSpec, call: Caller, pool: DeploymentHandle) -> None:
        super().__init__(spec, call, [pool])
        self.pool = pool
        self.call = call
        self._members: OrderedDict[str, PoolMemberPipeline] = OrderedDict()

    def member(self, member: str) -> PoolMemberPipeline:
        """The client of member ``member`` (whether it is one, its replicas decide).

        Raises:
            ModelNotFoundError: ``member`` cannot be a member's id.
        """
        found = self._members.get(member)
        if found is None:
            if not (DIRECTORY_MEMBER.fullmatch(member) or HUB_MEMBER.fullmatch(member)):
                raise ModelNotFoundError(f"{self.spec.name}/{member} is not served: "
                                         f"{member!r} cannot name a member of a pool")
            found = self._members[member] = PoolMemberPipeline(self, member)
            if len(self._members) > self.KEPT_MEMBERS:
                self._members.popitem(last=False)
        self._members.move_to_end(member)
        return found

    def _send(self, group: list[Job]) -> DeploymentResponse:
        raise self.not_a_model()

    async def details(self) -> dict:
        raise self.not_a_model()  # a member's details load it: ask the member

    def not_a_model(self) -> ModelNotFoundError:
        """The error for a request to the pool itself."""
        return ModelNotFoundError(f"{self.spec.name!r} is a model pool: call one of its "
                                  f"members, {self.spec.name}/<member> (GET /v1/models)")

    async def members(self) -> list[str]:
        """The pool's members, as one replica lists them (also a check that one answers)."""
        return (await self._call(lambda: self.pool.members.remote()))["members"]

    async def listing(self) -> tuple[list[str], dict[str, list[str]]]:
        """The pool's members, and per member the replicas holding it, as every running
        replica reports it (Serve's ``broadcast``; a replica that fails to answer is left
        out)."""
        # One routed call first: it also starts this handle's router, which broadcast needs.
        first = await self._call(lambda: self.pool.members.remote())
        reports = await self.pool.broadcast("members").results_async(return_exceptions=True)
        reports = [report for report in reports if isinstance(report, dict)] or [first]
        where: dict[str, set[str]] = {}
        for report in reports:
            for member in report["loaded"]:
                where.setdefault(member, set()).add(report["replica"])
        return first["members"], {m: sorted(r) for m, r in where.items()}


class PoolMemberPipeline(EncodingPipeline):
    """One member of a model pool: requests go to a replica that holds it (Serve's
    multiplexed routing), which loads it first if none does."""

    def __init__(self, pool: PoolPipeline, member: str) -> None:
        handle = pool.pool.options(multiplexed_model_id=member)
        super().__init__(pool.spec, pool.call, handle, handle)
        self.member = member

    @property
    def key(self) -> str:
        return f"{self.spec.name}/{self.member}"

    @property
    def model_id(self) -> str:
        return self.member

    def _infer(self, texts: list[str], pairs: list[str] | None, truncation: bool,
               slices: list[Slice], encode: dict[str, Any]) -> DeploymentResponse:
        return self._model.infer_texts.remote(self.member, texts, pairs, truncation, slices,
                                              **encode)

    async def embed_ids(self, ids: list[list[int]], params: TaskParameters,
                        add_special_tokens: bool = True, names: list[str] | None = None
                        ) -> tuple[list[Any], int]:
        slices = [Slice(len(ids), params, "texts")]
        options = ids_options(params, add_special_tokens, names)
        (vectors,), tokens = await self._call(
            lambda: self._model.infer_ids.remote(self.member, ids, slices, **options))
        return vectors, tokens

    async def decode(self, ids: list[list[int]], skip_special_tokens: bool = True,
                     names: list[str] | None = None) -> list[str]:
        return await self._call(lambda: self._model.decode.remote(
            self.member, ids, skip_special_tokens, names))

    async def processed_tokens(self, texts: list[str]) -> int:
        return await self._call(lambda: self._model.processed_tokens.remote(self.member, texts))

    async def token_details(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        return await self._call(lambda: self._model.token_details.remote(
            self.member, texts, add_special_tokens))

    async def details(self) -> dict:
        if self._details is None:
            self._details = await self._call(lambda: self._model.details.remote(self.member))
        return self._details
