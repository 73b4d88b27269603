"""Pure serving logic: configuration, schemas, errors, tokenization and per-task processing.

Nothing in this package imports Ray or FastAPI; ``deployments/`` adapts it to Ray Serve
and ``graphs/`` wires the deployments together.
"""
