"""``AppClient``: the app's Python handle API with a process's concurrent calls merged.

Every ``DeploymentHandle`` call costs CPU in the caller and in the ingress replica (about a
millisecond each on this project's 2-core machines), whatever it carries; over HTTP the
same request costs HAProxy and uvicorn far less. A process making many concurrent calls
(an async service, a batch job) pays that per call. ``AppClient`` sends the calls made in
one event-loop turn for one model as a single ``Ingress.infer_many`` call, so the price is
paid once per group; each caller still gets its own answer, or its own error.

    client = AppClient(serve.get_app_handle("default"))
    vector = await client.infer("minilm", {"inputs": "a sentence"})
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray.serve.handle import DeploymentHandle

from deployments.http import as_serving_error


class AppClient:
    """Merges concurrent ``infer`` calls of this process into ``infer_many`` calls."""

    def __init__(self, handle: DeploymentHandle, max_group: int = 64,
                 max_texts: int = 64) -> None:
        """``handle``: the app's (``serve.get_app_handle(name)``); ``max_group``: the most
        requests one call carries; ``max_texts``: the most texts, so that requests of many
        texts still spread over the model's replicas (one call reaches one replica)."""
        self._handle = handle
        self._max_group = max_group
        self._max_texts = max_texts
        self._waiting: dict[str, list[tuple[Any, asyncio.Future]]] = {}
        self._texts: dict[str, int] = {}
        self._calls: set[asyncio.Task] = set()  # referenced until done (asyncio keeps none)

    async def infer(self, model: str, request: Any) -> Any:
        """The answer of ``request`` for ``model``, as ``Ingress.infer`` gives it.

        Raises:
            ServingError: this request's own error (``InvalidInputError``...), or the
                group call's when the call itself failed.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        texts = _texts_in(request)
        if self._texts.get(model, 0) + texts > self._max_texts:
            self._send(model)  # this one starts the next group
        group = self._waiting.setdefault(model, [])
        group.append((request, future))
        self._texts[model] = self._texts.get(model, 0) + texts
        if len(group) == 1:  # the first of this turn: send once the turn's calls are in
            loop.call_soon(self._send, model)
        elif len(group) >= self._max_group:
            self._send(model)
        return await future

    def _send(self, model: str) -> None:
        self._texts.pop(model, None)
        group = self._waiting.pop(model, None)
        if group:
            task = asyncio.ensure_future(self._call(model, group))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, model: str, group: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            answers = await self._handle.infer_many.remote(model, [r for r, _ in group])
        except Exception as exc:
            answers = [as_serving_error(exc)] * len(group)
        for (_, future), answer in zip(group, answers, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)


def _texts_in(request: Any) -> int:
    inputs = request.get("inputs") if isinstance(request, dict) else getattr(request, "inputs",
                                                                              None)
    return len(inputs) if isinstance(inputs, list) else 1
