"""How many requests one ingress replica admits: a fixed cap, and a bound on the wait.

The wait a new request faces is about ``in flight / service rate`` (Little's law). The
service rate is measured as answers per second *of busy time* (time with at least one
request in flight) over the last few seconds: under load that is the throughput the
replicas sustain; under light load it is about ``1 / latency``, which rises with
concurrency, so a burst after a quiet spell is not mistaken for overload. Admitting at
most ``rate × max_wait_s`` requests keeps the accepted requests' latency near
``max_wait_s`` however large the offered load, instead of growing with the cap.

Rates are kept per route (one per model URL), so slow generation requests do not shrink
the room left for fast embedding requests. The rate used is the higher of the last 5 s
and the last minute: a pause of a few seconds (a replica being replaced while the ingress
retries its calls) does not turn into refusals, and a route stalled for a minute is held
to ``min_inflight``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import takewhile

# Routes tracked separately; requests to any further path share one estimate, so random
# paths cannot grow the table.
MAX_ROUTES = 64
OTHER = "*"


@dataclass(slots=True)
class _Bucket:
    """What one ``bucket_s`` slice of time saw."""

    index: int  # the slice's start, in buckets since the clock's origin
    answers: int = 0
    busy_s: float = 0.0


class ServiceRate:
    """Requests in flight on one route and the rate they are answered at, over a short
    window (the current rate) and a long one (what the route sustained lately)."""

    def __init__(self, clock: Callable[[], float], short_s: float = 5.0,
                 long_s: float = 60.0, bucket_s: float = 0.5) -> None:
        self.inflight = 0
        self._clock = clock
        self._bucket_s = bucket_s
        self._short = round(short_s / bucket_s)
        self._long = round(long_s / bucket_s)
        self._history: deque[_Bucket] = deque()
        self._answers = 0  # over the long window
        self._busy = 0.0
        self._last = clock()

    def _advance(self) -> _Bucket:
        """Credit busy time up to now; return the current bucket."""
        now = self._clock()
        index = math.floor(now / self._bucket_s)
        if not self._history or self._history[-1].index != index:
            self._history.append(_Bucket(index))
            while self._history[0].index <= index - self._long:
                expired = self._history.popleft()
                self._answers -= expired.answers
                self._busy -= expired.busy_s
        if self.inflight > 0:
            self._history[-1].busy_s += now - self._last
            self._busy += now - self._last
        self._last = now
        return self._history[-1]

    def started(self) -> None:
        self._advance()
        self.inflight += 1

    def finished(self) -> None:
        self._advance().answers += 1
        self._answers += 1
        self.inflight -= 1

    def rate(self, min_answers: int, min_busy_s: float) -> float | None:
        """Answers per busy second: the higher of the short and the long window's, so a
        pause of seconds (a replica being replaced) does not read as a collapse, while a
        route that stalls for longer than the long window rates 0. None until there is
        evidence (``min_answers`` answers or ``min_busy_s`` busy), and after an idle
        long window."""
        current = self._advance().index
        if self._busy <= 1e-9 or (self._answers < min_answers and self._busy < min_busy_s):
            return None
        recent = list(takewhile(lambda bucket: bucket.index > current - self._short,
                                reversed(self._history)))
        short_busy = sum(bucket.busy_s for bucket in recent)
        short = sum(bucket.answers for bucket in recent) / short_busy if short_busy > 0 else 0.0
        return max(short, self._answers / self._busy)


class AdmissionLimit:
    """Counts requests in flight and decides whether one more may start on a route.
    Without ``max_wait_s`` only the total is counted: no per-route work per request."""

    def __init__(self, max_inflight: int, max_wait_s: float | None = None,
                 min_inflight: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_inflight = max_inflight
        self.max_wait_s = max_wait_s
        self.min_inflight = min(min_inflight, max_inflight)
        self.inflight = 0
        self._routes: dict[str, ServiceRate] = {}
        self._clock = clock

    def route(self, path: str) -> ServiceRate:
        route = self._routes.get(path)
        if route is None:
            if len(self._routes) >= MAX_ROUTES - 1:
                path = OTHER
            route = self._routes.setdefault(path, ServiceRate(self._clock))
        return route

    def limit(self, path: str) -> int:
        """Requests that may be in flight on ``path`` now."""
        if not self.max_wait_s:
            return self.max_inflight
        rate = self.route(path).rate(self.min_inflight, min_busy_s=self.max_wait_s)
        if rate is None:
            return self.max_inflight
        return max(self.min_inflight, min(self.max_inflight, int(rate * self.max_wait_s)))

    def admits(self, path: str) -> bool:
        if self.inflight >= self.max_inflight:
            return False
        return not self.max_wait_s or self.route(path).inflight < self.limit(path)

    def started(self, path: str) -> None:
        if self.max_wait_s:
            self.route(path).started()
        self.inflight += 1

    def finished(self, path: str) -> None:
        if self.max_wait_s:
            self.route(path).finished()
        self.inflight -= 1
