"""Admission control of the ingress (in-flight limit, deadline) and replica-loss detection,
driven as plain ASGI apps (no Ray instance)."""

from __future__ import annotations

import asyncio
import json

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError

from deployments.http import is_replica_loss
from deployments.middleware import Admission
from serving.admission import MAX_ROUTES, AdmissionLimit
from serving.errors import InvalidInputError
from serving.jobs import Job, all_abandoned
from serving.tasks import TaskInputs
from serving.tasks.text_classification import TextClassificationParameters


class SlowApp:
    """Answers 200 after ``delay_s``; records cancellations."""

    def __init__(self, delay_s: float = 0.2, stream: bool = False) -> None:
        self.delay_s = delay_s
        self.stream = stream
        self.cancelled = 0
        self.finished = 0

    async def __call__(self, scope, receive, send) -> None:
        try:
            if self.stream:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await asyncio.sleep(self.delay_s)
                await send({"type": "http.response.body", "body": b"done"})
            else:
                await asyncio.sleep(self.delay_s)
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"ok"})
            self.finished += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def call(app, method: str = "POST") -> tuple[int, dict, bytes]:
    """One request through ``app``: (status, headers, body)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": method, "path": "/models/x", "headers": []},
              receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_requests_beyond_the_limit_are_refused_at_once_with_429():
    async def scenario():
        inner = SlowApp(delay_s=0.3)
        refusals = []
        app = Admission(inner, max_inflight=3, timeout_s=10, on_refused=refusals.append)
        admitted = [asyncio.ensure_future(call(app)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert app.inflight == 3
        started = asyncio.get_running_loop().time()
        status, headers, body = await call(app)
        refused_in = asyncio.get_running_loop().time() - started
        results = await asyncio.gather(*admitted)
        return status, headers, body, refused_in, results, refusals, app.inflight

    status, headers, body, refused_in, results, refusals, inflight = asyncio.run(scenario())
    assert status == 429
    assert headers[b"retry-after"] == b"1"
    assert json.loads(body)["error_type"] == "overloaded"
    assert refused_in < 0.1  # not queued behind the admitted ones
    assert [r[0] for r in results] == [200, 200, 200]
    assert refusals == ["overloaded"]
    assert inflight == 0


def test_with_a_wait_bound_a_route_that_answers_slowly_is_refused_sooner():
    """A route answering 10 requests/s with a 1 s wait bound admits ~10 of a burst of 40
    and refuses the rest at once; another route keeps the whole cap."""
    async def scenario():
        app = Admission(SlowApp(delay_s=0.1), max_inflight=512, timeout_s=10, max_wait_s=1)
        for _ in range(12):  # measured: 10 answers per busy second
            await call(app)
        burst = await asyncio.gather(*(call(app) for _ in range(40)))
        return [status for status, _, _ in burst], app.limit.limit("/models/other")

    statuses, other_limit = asyncio.run(scenario())
    assert 8 <= statuses.count(200) <= 12, statuses
    assert statuses.count(429) == 40 - statuses.count(200)
    assert other_limit == 512  # nothing measured on that route: only the cap


def test_slots_free_up_after_answers():
    async def scenario():
        app = Admission(SlowApp(delay_s=0.01), max_inflight=1, timeout_s=10)
        return [(await call(app))[0] for _ in range(5)]

    assert asyncio.run(scenario()) == [200] * 5


def test_get_requests_are_not_counted():
    async def scenario():
        app = Admission(SlowApp(delay_s=0.2), max_inflight=1, timeout_s=10)
        busy = asyncio.ensure_future(call(app))
        await asyncio.sleep(0.02)
        status = (await call(app, method="GET"))[0]
        await busy
        return status

    assert asyncio.run(scenario()) == 200


def test_a_request_past_its_deadline_gets_504_and_its_work_is_cancelled():
    async def scenario():
        inner = SlowApp(delay_s=5)
        refusals = []
        app = Admission(inner, max_inflight=8, timeout_s=0.1, on_refused=refusals.append)
        result = await call(app)
        return result, inner, refusals, app.inflight

    (status, headers, body), inner, refusals, inflight = asyncio.run(scenario())
    assert status == 504
    assert json.loads(body) == {"error": "the request did not finish within 0.1 s",
                                "error_type": "timeout"}
    assert inner.cancelled == 1 and inner.finished == 0
    assert refusals == ["timeout"] and inflight == 0


def test_a_started_stream_is_not_cut_by_the_deadline():
    async def scenario():
        inner = SlowApp(delay_s=0.3, stream=True)
        app = Admission(inner, max_inflight=8, timeout_s=0.05)
        return await call(app), inner

    (status, _, body), inner = asyncio.run(scenario())
    assert (status, body, inner.finished) == (200, b"done", 1)


def test_a_client_that_goes_away_cancels_its_work():
    async def scenario():
        inner = SlowApp(delay_s=5)
        app = Admission(inner, max_inflight=8, timeout_s=10)
        request = asyncio.ensure_future(call(app))
        await asyncio.sleep(0.05)
        request.cancel()  # what Ray does when the HTTP client disconnects
        await asyncio.gather(request, return_exceptions=True)
        await asyncio.sleep(0)
        return inner, app.inflight

    inner, inflight = asyncio.run(scenario())
    assert inner.cancelled == 1 and inflight == 0


@pytest.mark.parametrize("exc, lost", [
    (ActorDiedError(), True),
    (ActorUnavailableError("gone", b"0" * 16), True),
    (RayTaskError("infer_many", "tb", ActorDiedError()), True),
    (RayTaskError("infer_many", "tb", ValueError("bad")), False),
    (InvalidInputError("inputs: bad"), False),
    (BackPressureError(num_queued_requests=3, max_queued_requests=2), False),
    (ValueError("x"), False),
])
def test_replica_loss_is_told_from_request_errors(exc, lost):
    assert is_replica_loss(exc) is lost


def test_replica_loss_found_through_a_cause_chain():
    try:
        try:
            raise ActorDiedError()
        except ActorDiedError as inner:
            raise RuntimeError("while resolving an argument") from inner
    except RuntimeError as outer:
        assert is_replica_loss(outer)


def test_all_abandoned_waits_for_every_job():
    def job() -> Job:
        return Job("m", TaskInputs(["x"], None, single=True),
                   TextClassificationParameters())

    async def scenario():
        jobs = [job(), job()]
        waiter = asyncio.ensure_future(all_abandoned(jobs))
        jobs[0].abandoned.set()
        await asyncio.sleep(0.01)
        first = waiter.done()
        jobs[1].abandoned.set()
        await asyncio.wait_for(waiter, 1)
        return first

    assert asyncio.run(scenario()) is False


# --- the wait bound ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serve_steadily(limit: AdmissionLimit, clock: Clock, rate: float, seconds: float,
                   offered: int, path: str = "/models/a") -> int:
    """Offer ``offered`` requests at once, answer them at ``rate``/s while more keep
    arriving to refill the queue; returns how many the limit let in at the end."""
    def refill() -> None:
        while limit.inflight < offered and limit.admits(path):
            limit.started(path)

    for _ in range(int(seconds * rate)):
        refill()
        clock.now += 1 / rate
        limit.finished(path)
    refill()
    return limit.inflight


def test_the_wait_bound_admits_what_the_measured_rate_answers_in_max_wait():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=512, max_wait_s=2, clock=clock)
    assert limit.limit("/models/a") == 512  # no answers yet: only the cap applies
    inflight = serve_steadily(limit, clock, rate=100, seconds=6, offered=10_000)
    assert limit.route("/models/a").rate(8, 2) == pytest.approx(100, rel=0.05)
    assert 190 <= limit.limit("/models/a") <= 210 and inflight <= 210  # 100/s × 2 s
    assert not limit.admits("/models/a")


def test_the_wait_bound_does_not_mistake_a_burst_after_a_quiet_spell_for_overload():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=512, max_wait_s=2, clock=clock)
    for _ in range(20):  # one request every 0.22 s, each answered in 20 ms
        limit.started("/models/a")
        clock.now += 0.02
        limit.finished("/models/a")
        clock.now += 0.2
    # 20 answers in 0.4 busy seconds: 50/s, although only ~5 arrived per second.
    assert limit.route("/models/a").rate(8, 2) == pytest.approx(50, rel=0.01)
    assert limit.limit("/models/a") == 100
    for _ in range(64):  # a burst of 64 concurrent requests is let in
        assert limit.admits("/models/a")
        limit.started("/models/a")


def test_the_wait_bound_forgets_old_answers_and_never_goes_below_the_floor():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=512, max_wait_s=1, min_inflight=8, clock=clock)
    serve_steadily(limit, clock, rate=2, seconds=10, offered=100)  # a very slow model
    assert limit.limit("/models/a") == 8  # 2/s × 1 s, but never fewer than 8 in flight
    for _ in range(limit.inflight):
        limit.finished("/models/a")
    clock.now += 61  # idle for longer than the long window
    assert limit.route("/models/a").rate(8, 2) is None and limit.limit("/models/a") == 512


def test_without_a_wait_bound_only_the_cap_applies():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=64, max_wait_s=None, clock=clock)
    assert serve_steadily(limit, clock, rate=10, seconds=5, offered=1000) == 64


def test_each_route_has_its_own_rate_and_all_share_the_cap():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=60, max_wait_s=1, clock=clock)
    serve_steadily(limit, clock, rate=2, seconds=30, offered=50, path="/models/slow")
    assert limit.limit("/models/slow") == 8 and limit.inflight == 8
    assert limit.limit("/models/fast") == 60  # nothing measured there: only the cap
    admitted = 0
    while limit.admits("/models/fast"):
        limit.started("/models/fast")
        admitted += 1
    assert admitted == 60 - 8  # the cap is shared
    clock.now += 1
    for _ in range(admitted):
        limit.finished("/models/fast")
    serve_steadily(limit, clock, rate=50, seconds=4, offered=1000, path="/models/fast")
    assert limit.limit("/models/fast") == 50 and limit.limit("/models/slow") == 8


def test_random_paths_cannot_grow_the_route_table():
    limit = AdmissionLimit(max_inflight=2000, max_wait_s=1)
    for index in range(1000):
        assert limit.admits(f"/nowhere/{index}")
        limit.started(f"/nowhere/{index}")
    assert len(limit._routes) == MAX_ROUTES
    assert limit.route("/nowhere/999").inflight == 1000 - (MAX_ROUTES - 1)
    assert limit.route("/nowhere/0").inflight == 1


def test_a_route_that_stops_answering_is_held_to_the_floor():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=512, max_wait_s=2, min_inflight=8, clock=clock)
    for _ in range(100):  # a cold burst is let in: nothing is known yet
        assert limit.admits("/models/a")
        limit.started("/models/a")
    clock.now += 3  # no answer for longer than max_wait_s
    assert limit.limit("/models/a") == 8 and not limit.admits("/models/a")


def test_a_pause_of_seconds_keeps_the_limit_and_a_stall_of_minutes_ends_at_the_floor():
    clock = Clock()
    limit = AdmissionLimit(max_inflight=512, max_wait_s=2, min_inflight=8, clock=clock)
    serve_steadily(limit, clock, rate=100, seconds=20, offered=150)
    assert limit.limit("/models/a") == 200
    clock.now += 6  # nothing answers while a replica is replaced: the limit holds
    assert limit.limit("/models/a") >= 0.7 * 200 and limit.admits("/models/a")
    clock.now += 60  # nothing answers for a minute: down to the floor
    assert limit.limit("/models/a") == 8
