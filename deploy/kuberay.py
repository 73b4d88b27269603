"""``python -m deploy.kuberay``: render the KubeRay ``RayService`` manifests.

Each manifest is ``deploy/kubernetes/rayservice.template.yaml`` (the Ray cluster: head,
CPU and GPU worker groups, images, resources) with its ``serveConfigV2`` generated from a
Serve config of this repository, so ``serve_config.yaml`` stays the one source of truth for
the application. ``--check`` exits 1 when a committed manifest is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from serving.config import AppConfig
from serving.tasks import task_class

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "kubernetes" / "rayservice.template.yaml"
# Serve config → (manifest, RayService name).
TARGETS = {
    "serve_config.yaml": ("deploy/kubernetes/rayservice.yaml", "transformers-serve"),
    "configs/gpu.yaml": ("deploy/kubernetes/rayservice-gpu.yaml", "transformers-serve-gpu"),
}
IMAGE = "transformers-serve:0.1.0"
GPU_IMAGE = "transformers-serve:0.1.0-cuda"
# KubeRay's serve Service targets this port on every pod that runs a Serve proxy.
SERVE_PORT = 8000


def ray_version() -> str:
    """The Ray version pyproject.toml pins (``ray[serve]==X``): the cluster must match it."""
    match = re.search(r'"ray\[serve\]==([\w.]+)"', (ROOT / "pyproject.toml").read_text())
    if match is None:
        raise RuntimeError("pyproject.toml does not pin ray[serve]==<version>")
    return match.group(1)


def serve_config_v2(config: dict) -> dict:
    """The Serve config KubeRay deploys: ``config`` with the proxies on 0.0.0.0:8000."""
    rendered = dict(config)
    rendered["http_options"] = {**config.get("http_options", {}),
                                "host": "0.0.0.0", "port": SERVE_PORT}
    return rendered


def render(source: str, name: str, image: str = IMAGE, gpu_image: str = GPU_IMAGE) -> str:
    """The manifest text for the Serve config at ``source`` (relative to the repo root)."""
    config = yaml.safe_load((ROOT / source).read_text())
    for application in config["applications"]:
        AppConfig.model_validate(application.get("args") or {})  # fail here, not in the pod
    body = yaml.safe_dump(serve_config_v2(config), sort_keys=False, width=100)
    return Template(TEMPLATE.read_text()).substitute(
        source=source, name=name, image=image, gpu_image=gpu_image,
        ray_version=ray_version(), serve_config=textwrap.indent(body, "    ").rstrip("\n"),
    )


@dataclass(frozen=True)
class Demand:
    """What one deployment asks of the cluster at its largest."""

    deployment: str
    replicas: int
    num_cpus: float
    num_gpus: float


def replica_demands(args: AppConfig) -> list[Demand]:
    """Every deployment ``graphs.app.build_app`` creates for ``args`` (autoscaled ones at
    ``max_replicas``), with the CPUs and GPUs of one replica."""
    ingress = args.ingress
    demands = [Demand("ingress", ingress.num_replicas, ingress.num_cpus, 0)]
    for spec in args.models:
        replicas = spec.autoscaling.max_replicas if spec.autoscaling else spec.num_replicas
        generates = spec.task == "text-generation" or getattr(
            task_class(spec.task), "generates", False)
        kind = "generator" if generates else "model"
        demands.append(Demand(f"{spec.name}-{kind}", replicas, spec.num_cpus, spec.num_gpus))
        if not generates and not spec.colocate_tokenizer:
            demands.append(Demand(f"{spec.name}-tokenizer", spec.tokenizer_replicas,
                                  spec.tokenizer_num_cpus, 0))
    return demands


def capacity_problems(manifest: dict) -> list[str]:
    """Why the manifest's cluster could not hold its applications at their largest: a
    replica no worker group fits, or more CPUs/GPUs than all groups at ``maxReplicas``
    offer (the head has none to give). Empty when it fits; bin packing is not modelled."""
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [(float(g["rayStartParams"].get("num-cpus", 0)),
               float(g["rayStartParams"].get("num-gpus", 0)), int(g["maxReplicas"]))
              for g in cluster["workerGroupSpecs"]]
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    problems = []
    cpus = gpus = 0.0
    for application in serve_config["applications"]:
        for demand in replica_demands(AppConfig.model_validate(application.get("args") or {})):
            if not any(demand.num_cpus <= c and demand.num_gpus <= g for c, g, _ in groups):
                problems.append(f"{demand.deployment}: no worker group has "
                                f"{demand.num_cpus} CPUs and {demand.num_gpus} GPUs")
            cpus += demand.replicas * demand.num_cpus
            gpus += demand.replicas * demand.num_gpus
    offered_cpus = sum(c * n for c, _, n in groups)
    offered_gpus = sum(g * n for _, g, n in groups)
    if cpus > offered_cpus:
        problems.append(f"replicas need {cpus} CPUs, worker groups offer {offered_cpus}")
    if gpus > offered_gpus:
        problems.append(f"replicas need {gpus} GPUs, worker groups offer {offered_gpus}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.kuberay", description=__doc__)
    parser.add_argument("--image", default=IMAGE, help="image of the head and CPU workers")
    parser.add_argument("--gpu-image", default=GPU_IMAGE, help="image of the GPU workers")
    parser.add_argument("--out-dir", type=Path,
                        help="write the manifests there instead of over the committed ones "
                        "(e.g. with your registry's images)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a committed manifest is stale")
    options = parser.parse_args(argv)
    stale = []
    for source, (target, name) in TARGETS.items():
        text = render(source, name, options.image, options.gpu_image)
        problems = capacity_problems(yaml.safe_load(text))
        if problems:
            print(f"{target}: " + "; ".join(problems), file=sys.stderr)
            return 1
        path = options.out_dir / Path(target).name if options.out_dir else ROOT / target
        if options.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(target)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} (serveConfigV2 from {source})")
    if stale:
        print(f"stale: {', '.join(stale)}; run `python -m deploy.kuberay`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
