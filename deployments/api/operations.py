"""Operations routes: ``/health``, answered at once for models without a running replica."""

import asyncio
from typing import Any

from fastapi.responses import JSONResponse
from ray import serve

from deployments.api.common import IngressDep, new_router
from deployments.http import as_serving_error
from serving.errors import ServingError
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.operations import HealthReport

router = new_router()
# How long /health waits for Serve's controller to say which deployments have replicas.
STATUS_TIMEOUT_S = 0.5


@router.get("/health", response_model=HealthReport, responses={503: {"model": HealthReport}})
async def health(ingress: IngressDep) -> JSONResponse:
    """200 only when every model has a running replica and answers a probe request; a
    model without a running replica (still loading, pending placement) is reported at
    once, without a probe that would wait for one."""
    names, pools = ingress.endpoint_names(), list(ingress.pools)
    idle = await _without_replicas()
    results = await asyncio.gather(*(_check(ingress, name, idle) for name in names),
                                   *(_check_pool(ingress, pool, idle) for pool in pools))
    names += pools
    report = HealthReport(
        status="ok" if all(r == "ok" for r in results) else "unhealthy",
        models=dict(zip(names, results, strict=True)),
    )
    return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)


async def _without_replicas() -> dict[str, str]:
    """This application's deployments that have no running replica, with their status
    (empty when the controller does not answer in time: the probes then decide)."""
    try:
        app_name = serve.get_replica_context().app_name
        status = await asyncio.wait_for(asyncio.to_thread(serve.status), STATUS_TIMEOUT_S)
    except Exception:  # noqa: BLE001 (no status is no verdict)
        return {}
    app = status.applications.get(app_name)
    if app is None:
        return {}
    return {name: f"{deployment.status}" + (f" ({deployment.message})" if deployment.message
                                             else "")
            for name, deployment in app.deployments.items()
            if not deployment.replica_states.get("RUNNING")}


async def _check(ingress: Any, name: str, idle: dict[str, str]) -> str:
    """'ok', or why endpoint ``name`` cannot answer."""
    endpoint = ingress.endpoint(name)
    task = endpoint.task
    probe = InferenceRequest(inputs=task.probe_inputs, parameters=task.probe_parameters)
    return _idle(endpoint.pipeline, idle) or await _probe(ingress, ingress.answer(name, probe))


async def _check_pool(ingress: Any, name: str, idle: dict[str, str]) -> str:
    """'ok', or why model pool ``name`` cannot answer: its replicas answer a listing (a
    probe request would load a member)."""
    pool = ingress.pools[name]
    return _idle(pool, idle) or await _probe(ingress, pool.members())


def _idle(pipeline: Any, idle: dict[str, str]) -> str | None:
    for deployment in pipeline.deployments:
        if deployment.deployment_name in idle:
            return (f"unavailable: deployment {deployment.deployment_name} has no running "
                    f"replica: {idle[deployment.deployment_name]}")
    return None


async def _probe(ingress: Any, call: Any) -> str:
    try:
        await asyncio.wait_for(call, timeout=ingress.config.ingress.health_timeout_s)
        return "ok"
    except Exception as exc:  # report the reason instead of failing the probe
        error = exc if isinstance(exc, ServingError) else as_serving_error(exc)
        return f"{error.error_type}: {error.message}"
