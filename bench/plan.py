"""What one benchmark run measures: the workload × client matrices, the cells of each
system, and the ``--variant`` / ``--matrix`` option values."""

from __future__ import annotations

from bench.workloads import parse

FULL = {  # workload -> closed-loop client counts
    "single-short": (1, 16, 64, 256),
    "single-long": (16, 64),
    "single-mixed": (64,),
    "batch32-short": (16,),
    "batch32-mixed": (16,),
}
COUNT_ONLY = ("single-mixed", "batch32-mixed")  # where length-unaware batching is compared
SMOKE = {"single-mixed": (1, 4), "batch32-short": (1,)}
OPEN_LOOP_SYSTEMS = ("project", "baseline", "infinity")  # also measured at --rates
# Other ways into the project (a DeploymentHandle, plain `serve run`) and the sentiment
# classifier are compared where the targets are: their cells of the full matrix only.
WAYS_IN = {"single-short": (1, 64), "batch32-short": (16,)}
WAYS_IN_SYSTEMS = ("project-handle", "project-client", "project-proxy", "project-in-ingress")
SENTIMENT = {"single-short": (1, 64)}


def cells(system: str, matrix: dict[str, tuple[int, ...]],
          rates: list[float]) -> list[tuple[str, str, float]]:
    """(workload, mode, clients or rate) for one system.

    Args:
        system: a name from ``bench.systems.SYSTEMS`` or ``project-<variant>``.
        matrix: workload name -> closed-loop client counts.
        rates: open-loop arrival rates (req/s) of single-short requests.
    """
    if system == "project-count":
        return [(w, "closed", c) for w in COUNT_ONLY if w in matrix for c in matrix[w]]
    if system.startswith("sentiment-"):  # single texts only
        matrix = SENTIMENT if matrix == FULL else {
            w: c for w, c in matrix.items() if w.startswith("single-")}
    elif system in WAYS_IN_SYSTEMS and matrix == FULL:
        matrix = WAYS_IN
    result = [(w, "closed", c) for w, clients in matrix.items() for c in clients]
    if system in OPEN_LOOP_SYSTEMS:
        result += [("single-short", "open", rate) for rate in rates]
    return result


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key=value`` → (NAME, settings), values parsed as YAML scalars.

    Raises:
        SystemExit: no name or no settings.
    """
    import yaml

    name, _, pairs = text.partition(":")
    settings = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        settings[key.strip()] = yaml.safe_load(value)
    if not name or not settings:
        raise SystemExit(f"--variant {text!r}: expected NAME:key=value,...")
    return name, settings


def parse_matrix(text: str) -> dict[str, tuple[int, ...]]:
    """``single-short=1,64 batch32-short=16`` → {workload: client counts}.

    Raises:
        ValueError: an unknown workload or a malformed cell.
    """
    matrix = {}
    for cell in text.split():
        name, clients = cell.split("=")
        parse(name)  # validates the name
        matrix[name] = tuple(int(c) for c in clients.split(","))
    return matrix
