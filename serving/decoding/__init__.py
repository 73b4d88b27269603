"""Iteration-level ("continuous") batching of decoder-only generation (no Ray, no FastAPI).

Requests join and leave the running batch at every decoding step, each with its own
settings (:mod:`serving.decoding.sampling`): :mod:`serving.decoding.running` holds the
batch's left-padded KV cache and grows or shrinks it; :mod:`serving.decoding.scheduler`
runs the decoding loop in a thread, admits requests within a KV token budget and delivers
each new token to its request.
"""
