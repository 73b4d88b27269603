"""The reliability report (``python -m bench.reliability``): overload, killed replicas and
bad input against the default application; see ``bench/reliability/__main__.py``."""

from bench.reliability.replicas import replica_pids

__all__ = ["replica_pids"]
