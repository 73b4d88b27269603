"""The benchmark: this project against the model's own limit and its peers, in one run.

Run it with ``python -m bench`` (see ``python -m bench --help`` and the README).
"""
