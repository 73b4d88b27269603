"""Does a configuration fit the cluster? (no Ray: the resources are passed in)

Every replica reserves CPUs (and GPUs, custom resources) from Ray; a replica that no node
can hold stays pending forever, and Serve only logs that it "has taken more than 30s to be
scheduled". :func:`shortfalls` finds that before anything is deployed: the replicas a
config starts with must fit the nodes (one by one, first fit, largest first), and it says
which deployments and resources are missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.config import AppConfig
from serving.tasks import task_class


@dataclass(frozen=True)
class Replicas:
    """``count`` replicas of one deployment, each reserving ``need``."""

    deployment: str
    count: int
    need: dict[str, float]


def replicas(config: AppConfig) -> list[Replicas]:
    """The replicas ``config`` starts with (autoscaled models: their minimum, at least 1
    while requests wait) and what each reserves."""
    found = []
    for spec in config.models:
        if spec.in_ingress:  # the ingress replicas hold it: counted in their need
            continue
        scaling = spec.autoscaling
        count = spec.num_replicas if scaling is None else max(1, scaling.min_replicas)
        need = {"CPU": spec.num_cpus, "GPU": spec.num_gpus, **spec.resources}
        kind = ("pool" if spec.is_pool else "generator" if task_class(spec.task).generates
                else "model")
        found.append(Replicas(f"{spec.name}-{kind}", count, need))
        if kind == "model" and not spec.colocate_tokenizer:
            found.append(Replicas(f"{spec.name}-tokenizer", spec.tokenizer_replicas,
                                  {"CPU": spec.tokenizer_num_cpus}))
    ingress = config.ingress
    found.append(Replicas("Ingress", ingress.num_replicas, config.ingress_resources()))
    return found


def shortfalls(config: AppConfig, nodes: list[dict[str, float]]) -> list[str]:
    """Why ``config``'s replicas cannot all be placed on ``nodes`` (each node's total
    resources, e.g. ``{"CPU": 2, "GPU": 1}``); empty when they fit."""
    free = [dict(node) for node in nodes]
    unplaced: list[tuple[str, dict[str, float]]] = []
    wanted = [(group.deployment, group.need) for group in replicas(config)
              for _ in range(group.count)]
    # Largest first: a first fit then rarely strands a big replica behind small ones.
    for deployment, need in sorted(wanted, key=lambda item: -sum(item[1].values())):
        node = next((n for n in free if all(n.get(k, 0) + 1e-9 >= v for k, v in need.items()
                                            if v > 0)), None)
        if node is None:
            unplaced.append((deployment, need))
            continue
        for key, value in need.items():
            node[key] = node.get(key, 0) - value
    if not unplaced:
        return []
    totals: dict[str, float] = {}
    for group in replicas(config):
        for key, value in group.need.items():
            totals[key] = totals.get(key, 0) + value * group.count
    have = {key: sum(node.get(key, 0) for node in nodes) for key in totals}
    lines = [f"{deployment} needs {_resources(need)} per replica and no node has that left"
             for deployment, need in unplaced]
    lines.append("in all the config reserves " + _resources(totals) + "; the cluster has "
                 + _resources(have))
    return lines


def _resources(amounts: dict[str, float]) -> str:
    parts = [f"{value:g} {key}" for key, value in amounts.items()
             if 0 < value < float("inf")]  # infinite: not checked (see serving.cli_run)
    return ", ".join(parts) or "nothing"


SKIP_ENV = "TRANSFORMERS_SERVE_SKIP_CAPACITY_CHECK"
ADVICE = ("Lower num_cpus (model replicas reserve 1 CPU each by default; 0.25 is plenty for a "
          "small model that is rarely busy), serve same-task models as one model pool "
          "(docs/pools.md), or add nodes. TRANSFORMERS_SERVE_SKIP_CAPACITY_CHECK=1 deploys "
          "anyway (a cluster that autoscales adds the nodes later).")
