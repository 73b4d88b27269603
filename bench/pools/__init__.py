"""The model-pool benchmark (``python -m bench.pools``): one pool of many MiniLM-L6
classifiers against the same models as one single model and as separate models; see
``bench/pools/__main__.py``."""
