"""Requests as the ingress coalesces them: one job per request, grouped per pipeline so
concurrent requests share one tokenizer call and one model call."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from serving.tasks import TaskInputs, TaskParameters


@dataclass(frozen=True)
class Job:
    """One validated request for one model."""

    model: str
    inputs: TaskInputs
    params: TaskParameters
    request_id: str = ""  # Ray Serve's id of the request (its X-Request-ID over HTTP)
    # Set when the client is gone (disconnected, timed out): its queued work can be dropped.
    abandoned: asyncio.Event = field(default_factory=asyncio.Event, compare=False, repr=False)

    @property
    def group_key(self) -> tuple:
        # Jobs share a tokenizer call only with the same truncation, the same kind of
        # inputs (single texts or pairs) and the same settings of the task's batch key.
        return (self.model, self.params.truncation, self.inputs.text_pairs is not None,
                *self.params.batch_key())


@dataclass(frozen=True)
class Failed:
    """A job's error, returned as a value so one job's failure does not fail its batch."""

    error: BaseException


def group_jobs(jobs: list[Job]) -> list[list[int]]:
    """Indices of ``jobs`` grouped so that each group can share one pipeline call.

    Requests that refuse truncation run alone: an input that is too long must fail only its
    own request.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    alone = []
    for index, job in enumerate(jobs):
        if job.params.truncation:
            groups[job.group_key].append(index)
        else:
            alone.append([index])
    return list(groups.values()) + alone


def request_ids(jobs: list[Job]) -> str:
    """The request ids of ``jobs``, comma-separated: what the pipeline calls of a coalesced
    group log as their request id, so a search for any one request finds them."""
    return ",".join(dict.fromkeys(job.request_id for job in jobs if job.request_id))


def merged_inputs(jobs: list[Job]) -> tuple[list[str], list[str] | None]:
    """All texts (and pairs) of ``jobs``, in order."""
    texts = [text for job in jobs for text in job.inputs.texts]
    if jobs[0].inputs.text_pairs is None:
        return texts, None
    return texts, [pair for job in jobs for pair in job.inputs.text_pairs or []]


async def all_abandoned(jobs: list[Job]) -> None:
    """Return once every job of ``jobs`` is abandoned by its client."""
    for job in jobs:
        await job.abandoned.wait()
