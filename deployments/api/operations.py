"""Operations routes: ``/health`` (also SageMaker's ``/ping``, as TEI serves it) and one
model's ``/models/{name}/health``, answered at once for models without a running replica."""

import asyncio
from typing import Any

from fastapi.responses import JSONResponse
from ray import serve

from deployments.api.common import IngressDep, new_router
from deployments.http import as_serving_error
from serving.errors import ModelNotFoundError, ServingError
from serving.schemas.inference_api import InferenceRequest
from serving.schemas.operations import ErrorBody, HealthReport

router = new_router()
# How long /health waits for Serve's controller to say which deployments have replicas.
STATUS_TIMEOUT_S = 0.5


@router.get("/health", response_model=HealthReport, responses={503: {"model": HealthReport}})
@router.get("/ping", response_model=HealthReport, responses={503: {"model": HealthReport}},
            summary="Health (SageMaker's route, as TEI serves it)", name="ping")
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
    return _report(report)


@router.get("/models/{name:path}/health", response_model=HealthReport,
            responses={404: {"model": ErrorBody}, 503: {"model": HealthReport}},
            summary="One model's health")
async def model_health(name: str, ingress: IngressDep) -> JSONResponse:
    """200 when model ``name`` (a model, view, pool or pool member) answers a probe (a pool:
    a listing of its members), 503 otherwise, 404 for a name that is not served
    (``huggingface_hub``'s ``InferenceClient.health_check`` of ``.../models/{name}``)."""
    idle = await _without_replicas()
    if name in ingress.pools:
        result = await _check_pool(ingress, name, idle)
    else:
        endpoint = ingress.endpoint(name)  # 404 for a name that is not served
        result = _idle(endpoint.pipeline, idle)
        if result is None:
            error = await _probe_endpoint(ingress, endpoint)
            if isinstance(error, ModelNotFoundError):  # a pool member that is not one
                raise error
            result = _verdict(error)
    return _report(HealthReport(status="ok" if result == "ok" else "unhealthy",
                                models={name: result}))


def _report(report: HealthReport) -> JSONResponse:
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
    return _idle(endpoint.pipeline, idle) or _verdict(await _probe_endpoint(ingress, endpoint))


async def _probe_endpoint(ingress: Any, endpoint: Any) -> ServingError | None:
    """Why ``endpoint`` fails its task's probe request, or ``None`` when it answers."""
    task = endpoint.task
    probe = InferenceRequest(inputs=task.probe_inputs, parameters=task.probe_parameters)
    return await _failure(ingress, ingress.answer(endpoint.name, probe))


async def _check_pool(ingress: Any, name: str, idle: dict[str, str]) -> str:
    """'ok', or why model pool ``name`` cannot answer: its replicas answer a listing (a
    probe request would load a member)."""
    pool = ingress.pools[name]
    return _idle(pool, idle) or _verdict(await _failure(ingress, pool.members()))


def _idle(pipeline: Any, idle: dict[str, str]) -> str | None:
    for deployment in pipeline.deployments:
        if deployment.deployment_name in idle:
            return (f"unavailable: deployment {deployment.deployment_name} has no running "
                    f"replica: {idle[deployment.deployment_name]}")
    return None


async def _failure(ingress: Any, call: Any) -> ServingError | None:
    """Why ``call`` failed (or did not finish in time), or ``None`` when it answered."""
    try:
        await asyncio.wait_for(call, timeout=ingress.config.ingress.health_timeout_s)
        return None
    except Exception as exc:  # report the reason instead of failing the probe
        return exc if isinstance(exc, ServingError) else as_serving_error(exc)


def _verdict(error: ServingError | None) -> str:
    return "ok" if error is None else f"{error.error_type}: {error.message}"
