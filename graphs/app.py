"""``graphs.app:build_app``: ingress → per-model (tokenizer → batched model) pipelines.

Only wiring: which deployments serve each model (by role: ``tokenizer``, ``model``,
``generator``; ``deployments.pipelines.pipeline_for`` turns them into the ingress's
pipeline clients) and their Ray options."""

from __future__ import annotations

import logging
import os

import ray
from ray.serve import Application

from deployments.generator import Generator
from deployments.ingress import Ingress
from deployments.model import ColocatedModel, Model
from deployments.pool import PoolModel
from deployments.tokenizer import Tokenizer
from serving import capacity
from serving.config import AppConfig, ModelSpec
from serving.haproxy_edge import python_proxy_warning
from serving.tasks import task_class

# Rolling updates start each replacement replica before stopping an old one. Ray's
# default (0) stops first: a one-replica deployment then has no replica until its
# replacement has loaded, and in the cluster test requests caught in that gap failed when
# their caller's graceful shutdown ran out. 25% of the target is one extra replica at a
# time for up to four replicas, like Kubernetes' default maxSurge. Override per deployment
# in serve_config.yaml's `deployments:` section (0 where there is no room for the extra
# replica's CPUs/GPUs).
MAX_SURGE_PERCENT = 25
logger = logging.getLogger("ray.serve")


def _model_options(spec: ModelSpec) -> dict:
    options = {
        "name": f"{spec.name}-model",
        "max_surge_percent": MAX_SURGE_PERCENT,
        "user_config": spec.batch_settings(),
        # Several full batches may be in flight, otherwise Ray's default (5) caps batching.
        "max_ongoing_requests": spec.max_ongoing_requests or max(2 * spec.max_batch_size, 64),
        "max_queued_requests": spec.max_queued_requests,
        "ray_actor_options": {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus,
                              "resources": dict(spec.resources)},
    }
    if spec.autoscaling is not None:
        options["autoscaling_config"] = spec.autoscaling.model_dump()
    else:
        options["num_replicas"] = spec.num_replicas
    return options


def _tokenizer_options(spec: ModelSpec) -> dict:
    return {
        "name": f"{spec.name}-tokenizer",
        "max_surge_percent": MAX_SURGE_PERCENT,
        "num_replicas": spec.tokenizer_replicas,
        "max_ongoing_requests": 256,
        "max_queued_requests": spec.max_queued_requests,
        "ray_actor_options": {"num_cpus": spec.tokenizer_num_cpus},
    }


def _pipeline(spec: ModelSpec) -> dict:
    """The deployments of one model: tokenizer → model (or a model that tokenizes itself,
    ``colocate_tokenizer``), the replicas of a model pool, or one generator for decoder-only
    text-generation and encoder-decoder (summarization, translation, text2text-generation)
    models (it tokenizes, pads, generates and decodes itself)."""
    if spec.in_ingress:  # loaded by the ingress replicas themselves
        return {"in_ingress": spec.load_settings()}
    if spec.is_pool:  # many models on one set of replicas, loaded on demand
        options = {**_model_options(spec), "name": f"{spec.name}-pool"}
        return {"pool": PoolModel.options(**options).bind(spec)}
    if task_class(spec.task).generates:
        options = {**_model_options(spec), "name": f"{spec.name}-generator"}
        return {"generator": Generator.options(**options).bind(spec.load_settings())}
    if spec.colocate_tokenizer:  # the model replicas tokenize themselves
        return {"model": ColocatedModel.options(**_model_options(spec)).bind(spec.load_settings())}
    model = Model.options(**_model_options(spec)).bind(spec.load_settings())
    return {
        "tokenizer": Tokenizer.options(**_tokenizer_options(spec)).bind(spec.load_settings()),
        "model": model,
    }


def _check_capacity(config: AppConfig) -> None:
    """Refuse a config whose replicas the connected Ray cluster cannot place (they would
    wait forever, pending); skipped without a connection or with SKIP_ENV=1."""
    if os.environ.get(capacity.SKIP_ENV) == "1" or not ray.is_initialized():
        return
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    problems = capacity.shortfalls(config, nodes)
    if problems:
        raise ValueError("this config does not fit the Ray cluster:\n  "
                         + "\n  ".join(problems) + "\n" + capacity.ADVICE)


def build_app(args: AppConfig) -> Application:
    """Build the application from ``serve_config.yaml``'s validated ``args``.

    Raises:
        ValueError: the replicas do not fit the connected cluster (naming them).
    """
    if not isinstance(args, AppConfig):
        args = AppConfig.model_validate(args)
    _check_capacity(args)
    if warning := python_proxy_warning(os.environ):
        logger.warning(warning)
    pipelines = {spec.name: _pipeline(spec) for spec in args.models}
    ingress = args.ingress
    need = args.ingress_resources()
    return Ingress.options(
        num_replicas=ingress.num_replicas,
        max_surge_percent=MAX_SURGE_PERCENT,
        max_ongoing_requests=ingress.max_ongoing_requests,
        max_queued_requests=ingress.max_queued_requests,
        ray_actor_options={"num_cpus": need.pop("CPU"), "num_gpus": need.pop("GPU"),
                           "resources": need},
    ).bind(pipelines, args)
