"""Calls from the ingress to the model deployments: retried when a replica dies, cancelled
when every client waiting for them has gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentResponse

from deployments.http import is_replica_loss
from serving.errors import RequestTimeoutError
from serving.jobs import Job, all_abandoned


def request_id() -> str:
    """Ray Serve's id of the request being handled ("" outside a request)."""
    return serve.context._get_serve_request_context().request_id  # no public accessor yet


def set_request_id(value: str) -> None:
    """Make ``value`` the id of the handle calls made from this asyncio task."""
    if value:
        serve.context._set_request_context(request_id=value)


async def _unless_abandoned(response: DeploymentResponse, jobs: list[Job] | None) -> Any:
    """Await ``response``; cancel it (and raise ``RequestTimeoutError``) if every job of
    ``jobs`` is abandoned first."""
    if not jobs:
        return await response
    answer = asyncio.ensure_future(response)  # any awaitable; a DeploymentResponse is one
    gone = asyncio.ensure_future(all_abandoned(jobs))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answer.done():
        return answer.result()
    response.cancel()  # Ray drops the work wherever it still waits (queue, batch)
    answer.cancel()
    raise RequestTimeoutError("every client of this call went away")


class Caller:
    """Makes deployment calls, again (up to ``retries`` times) when the replica serving one
    died: inference has no side effects, so a client sees no error while a healthy replica
    exists."""

    def __init__(self, retries: int, on_retry: Callable[[], None] = lambda: None) -> None:
        self.retries = retries
        self._on_retry = on_retry

    async def __call__(
        self, call: Callable[[], DeploymentResponse], jobs: list[Job] | None = None
    ) -> Any:
        """The answer of ``call()``. When every job of ``jobs`` is abandoned by its client,
        the call is cancelled so its queued work frees its batch slots."""
        for attempt in range(self.retries + 1):
            response = call()
            try:
                return await _unless_abandoned(response, jobs)
            except Exception as exc:
                if attempt == self.retries or not is_replica_loss(exc):
                    raise
                self._on_retry()
                await asyncio.sleep(0.05 * 2**attempt)  # let the router drop the dead replica
        raise AssertionError("unreachable")
