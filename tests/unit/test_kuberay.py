"""The KubeRay manifests and the container image, checked offline: the committed
RayService manifests are what ``python -m deploy.kuberay`` renders from the Serve configs,
their structure has the fields KubeRay's CRD requires (ray.io/v1 RayService /
RayClusterSpec / WorkerGroupSpec), the cluster can hold the applications, and the
Dockerfile installs the project with the Makefile's command."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import yaml

from deploy import kuberay

REPO = Path(__file__).resolve().parents[2]
TARGETS = list(kuberay.TARGETS.items())
IDS = [source for source, _ in TARGETS]
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# RayServiceSpec's fields (ray-operator/apis/ray/v1/rayservice_types.go).
RAYSERVICE_SPEC_FIELDS = {"serveConfigV2", "rayClusterConfig", "serveService",
                          "upgradeStrategy", "excludeHeadPodFromServeSvc",
                          "serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"}


def _manifest(target: str) -> dict:
    return yaml.safe_load((REPO / target).read_text())


@pytest.mark.parametrize(("source", "target"), TARGETS, ids=IDS)
def test_committed_manifest_is_rendered_from_the_serve_config(source, target):
    path, name = target
    assert (REPO / path).read_text() == kuberay.render(source, name), (
        f"{path} is stale: run `python -m deploy.kuberay`")
    assert kuberay.main(["--check"]) == 0


@pytest.mark.parametrize(("source", "target"), TARGETS, ids=IDS)
def test_serve_config_v2_equals_the_serve_config(source, target):
    serve_config = yaml.safe_load((REPO / source).read_text())
    deployed = yaml.safe_load(_manifest(target[0])["spec"]["serveConfigV2"])
    assert deployed["applications"] == serve_config["applications"]
    assert deployed["proxy_location"] == serve_config["proxy_location"]
    # Reachable from KubeRay's serve Service, whatever the local config binds.
    assert deployed["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert set(deployed) == set(serve_config)


def _containers(group: dict) -> list[dict]:
    containers = group["template"]["spec"]["containers"]
    assert containers and all(c["name"] and c["image"] for c in containers)
    return containers


def _check_group(group: dict) -> None:
    params = group["rayStartParams"]  # map[string]string in the CRD
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()), params
    (container,) = _containers(group)
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), (group, kind)
        assert all(isinstance(v, str) for v in resources[kind].values())
    # Ray's view of the pod must match what Kubernetes gives it.
    if "num-cpus" in params and params["num-cpus"] != "0":
        assert params["num-cpus"] == resources["limits"]["cpu"]
    gpus = resources["limits"].get("nvidia.com/gpu", "0")
    assert params.get("num-gpus", "0") == gpus
    assert resources["requests"].get("nvidia.com/gpu", "0") == gpus


@pytest.mark.parametrize("target", [t for _, t in TARGETS], ids=IDS)
def test_rayservice_structure(target):
    manifest = _manifest(target[0])
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    name = manifest["metadata"]["name"]
    assert DNS_1123.match(name) and name == target[1]
    spec = manifest["spec"]
    assert set(spec) <= RAYSERVICE_SPEC_FIELDS and isinstance(spec["serveConfigV2"], str)
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"] == kuberay.ray_version()
    head = cluster["headGroupSpec"]
    _check_group(head)
    assert head["rayStartParams"]["num-cpus"] == "0"  # replicas stay off the head
    ports = {p["containerPort"] for p in _containers(head)[0]["ports"]}
    assert {6379, 8265, 8000} <= ports
    groups = cluster["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        _check_group(group)
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    gpu_groups = [g for g in groups if g["rayStartParams"].get("num-gpus", "0") != "0"]
    cpu_groups = [g for g in groups if g not in gpu_groups]
    assert cpu_groups and cpu_groups[0]["minReplicas"] >= 1
    assert gpu_groups and all(g["minReplicas"] == 0 for g in gpu_groups)  # GPUs on demand
    images = {_containers(g)[0]["image"] for g in groups}
    assert images == {kuberay.IMAGE, kuberay.GPU_IMAGE}
    assert kuberay.IMAGE.endswith(":" + _project_version())


@pytest.mark.parametrize("target", [t for _, t in TARGETS], ids=IDS)
def test_cluster_holds_the_applications(target):
    assert kuberay.capacity_problems(_manifest(target[0])) == []


def test_capacity_problems_are_reported():
    manifest = _manifest("deploy/kubernetes/rayservice-gpu.yaml")
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    models = config["applications"][0]["args"]["models"]
    models[0] = {**models[0], "num_gpus": 2}  # no group has two GPUs per pod
    models[1] = {**models[1], "num_replicas": 40}  # 40 CPUs
    manifest["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    problems = kuberay.capacity_problems(manifest)
    assert any(p.startswith("minilm-model: no worker group") for p in problems)
    assert any(p.startswith("replicas need") and "CPUs" in p for p in problems)
    assert any(p.startswith("replicas need") and "GPUs" in p for p in problems)


def test_replica_demands_mirror_the_graph():
    from serving.config import AppConfig

    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    args = AppConfig.model_validate({"models": [
        {"name": "a", "task": "feature-extraction", "model": minilm, "num_replicas": 3,
         "num_cpus": 2, "num_gpus": 0.5},
        {"name": "b", "task": "feature-extraction", "model": minilm, "colocate_tokenizer": True,
         "autoscaling": {"min_replicas": 1, "max_replicas": 5}},
        {"name": "c", "task": "summarization", "model": "sshleifer/distilbart-cnn-6-6"},
    ]})
    demands = {d.deployment: d for d in kuberay.replica_demands(args)}
    assert set(demands) == {"ingress", "a-model", "a-tokenizer", "b-model", "c-generator"}
    assert demands["a-model"] == kuberay.Demand("a-model", 3, 2, 0.5)
    assert demands["a-tokenizer"].num_gpus == 0
    assert demands["b-model"].replicas == 5


# --- the container image ---------------------------------------------------------------

def _project_version() -> str:
    return re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(),
                     re.M).group(1)


def _makefile() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The Makefile's ``?=`` variables and each target's recipe lines."""
    variables, recipes, target = {}, {}, None
    for line in (REPO / "Makefile").read_text().splitlines():
        if match := re.match(r"^(\w+) \?= ?(.*)$", line):
            variables[match.group(1)] = match.group(2)
        elif match := re.match(r"^([\w.-]+):", line):
            target = match.group(1)
            recipes[target] = []
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip())
    return variables, recipes


def _dockerfile() -> tuple[dict[str, str], list[str], str]:
    """The Dockerfile's ARG defaults, RUN commands and FROM image (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    args = dict(line.split(None, 1)[1].split("=", 1) for line in lines
                if line.startswith("ARG ") and "=" in line)
    runs = [line[4:] for line in lines if line.startswith("RUN ")]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    return args, runs, base


def test_readme_install_command_is_the_makefiles():
    variables, recipes = _makefile()
    (command,) = recipes[".install-stamp"][:1]
    expanded = command.replace("$(PYTHON)", "python").replace('"$(TORCH)"', variables["TORCH"])
    assert expanded == "python -m pip install torch==2.13.0 -e ."
    assert "`pip install torch==2.13.0 -e .`" in (REPO / "README.md").read_text()


def test_dockerfile_installs_with_make_install():
    variables, recipes = _makefile()
    args, runs, base = _dockerfile()
    makes = [shlex.split(run) for run in runs if run.startswith("make ")]
    assert len(makes) == 1 and makes[0][:2] == ["make", "install"]
    assert "install" in recipes  # the target exists and runs the .install-stamp recipe
    assert 'TORCH="$TORCH"' in next(run for run in runs if run.startswith("make "))
    assert args["TORCH"] == variables["TORCH"]  # the same torch pin as `make install`
    # Any other pip install only pre-installs that same torch (from PyTorch's index).
    for run in runs:
        if "pip install" in run and not run.startswith("make "):
            assert shlex.split(run)[-1] == "$TORCH", run
    assert base.startswith("python:3.11")
    assert re.search(r'requires-python = ">=3.1[01]"', (REPO / "pyproject.toml").read_text())


def test_dockerignore_keeps_the_install_stamps_out():
    """A copied .install-stamp would make `make install` in the image a no-op."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for stamp in (".install-stamp", ".install-stamp-test"):
        assert any(fnmatch.fnmatch(stamp, pattern) for pattern in patterns), stamp
    for needed in ("pyproject.toml", "Makefile", "serving/runner.py", "graphs/app.py"):
        assert not any(fnmatch.fnmatch(needed, pattern) for pattern in patterns), needed
