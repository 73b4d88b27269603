"""The true limit: the bare model in every runtime a user could pick
(``python -m bench.runtimes``)."""
