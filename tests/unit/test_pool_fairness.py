"""A pool replica's members take turns: a flood of one member's requests does not hold back
another member's. Each member has its own batch queue (``deployments.model._Batching``) and
the forward passes run on the replica's event loop, so fairness is the order in which the
queues get the loop; this runs two real queues with forwards that block like real ones."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from ray.serve import batching

from deployments import model as model_module
from deployments.model import _Batching, _Queued

FORWARD_S = 0.005
BATCH = 4
FLOOD = 64


class _Runner:
    """Forwards that block the loop for FORWARD_S and log whose batch ran."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.on_batch = None

    def run(self, batch: list, by_length: bool = True, adapters=None, modes=None) -> list[list]:
        self.log.append(self.name)
        time.sleep(FORWARD_S)
        return [[0] * len(item) for item in batch]


class _Metrics:
    def waited(self, seconds: float) -> None:
        pass

    def batch(self, *args) -> None:
        pass


def _member(name: str, log: list[str], monkeypatch) -> _Batching:
    monkeypatch.setattr(model_module.ModelRunner, "load", lambda settings: _Runner(name, log))
    member = _Batching(SimpleNamespace(name=name, task="text-classification"), _Metrics())
    member.reconfigure({"max_batch_size": BATCH, "batch_wait_timeout_s": 0})
    return member


def test_a_flooded_member_does_not_hold_back_a_quiet_one(monkeypatch):
    monkeypatch.setattr(model_module, "lower_cpu_priority", lambda: None)
    # Outside a replica there is no max_ongoing_requests for Serve to compare batches with.
    monkeypatch.setattr(batching._BatchQueue,
                        "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None)
    log: list[str] = []
    arrived: list[int] = []  # hot batches run when the quiet request came
    hot, quiet = _member("hot", log, monkeypatch), _member("quiet", log, monkeypatch)
    one_text = [0]  # what a queued item's length is counted from

    async def scenario() -> None:
        now = time.perf_counter()
        flood = [asyncio.create_task(hot._forward(_Queued(one_text, now)))
                 for _ in range(FLOOD)]
        await asyncio.sleep(FORWARD_S)  # the flood is queued and its first batches ran
        arrived.append(len(log))
        alone = asyncio.create_task(quiet._forward(_Queued(one_text, time.perf_counter())))
        await asyncio.gather(*flood, alone)

    asyncio.run(scenario())
    assert log.count("hot") >= FLOOD // BATCH
    assert arrived[0] <= 4, log  # most of the flood's 16 batches were still queued
    # The quiet member's request ran after a few more of them (each queue's task yields to
    # the loop a couple of times on the way), not after the rest of the flood.
    assert log.index("quiet") - arrived[0] <= 3, log
