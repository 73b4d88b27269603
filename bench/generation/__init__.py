"""The generation benchmark (``python -m bench.generation``): output tokens/s and
time-to-first-token of streamed text generation, this project (continuous and static
scheduling) against ``transformers serve --continuous-batching``, on the same requests."""
