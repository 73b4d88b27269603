"""A model held by the ingress process itself (``in_ingress: true``), called as a
deployment handle is, so the pipeline clients of ``deployments.pipelines`` call it unchanged."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from serving.config import ModelSpec


class InProcess:
    """A model held by this process, called as a deployment handle is: ``model.method
    .remote(...)`` runs ``model.method(...)`` as an asyncio task (awaitable and cancellable,
    as a DeploymentResponse is), so pipeline clients call it unchanged (``in_ingress``)."""

    def __init__(self, target: Any, name: str) -> None:
        self.target = target
        self.deployment_name = name  # what /health looks up among the app's deployments

    def __getattr__(self, method: str) -> Any:
        return _Remote(getattr(self.target, method))


class _Remote:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Future:
        result = self._method(*args, **kwargs)
        if inspect.isawaitable(result):
            return asyncio.ensure_future(result)
        done = asyncio.get_running_loop().create_future()
        done.set_result(result)
        return done


def in_process_model(spec: ModelSpec, settings: Any) -> InProcess:
    """``spec``'s model loaded into this process (an ingress replica), batching as its
    own replicas would, at this process's CPU priority."""
    from deployments.model import Colocated

    model = Colocated(settings, yield_cpu=False)
    model.reconfigure(spec.batch_settings())
    return InProcess(model, f"{spec.name} (in the ingress)")
