"""Open-loop load: requests leave at a fixed rate, whether or not earlier ones were answered.

Run by ``bench.loadgen.open_loop`` in its own process so its CPU time can be measured:
``python -m bench.openloop --url URL --rate R --duration S --bodies FILE --out FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time

import aiohttp
import numpy as np

from bench.loadgen import REFUSALS


async def _run(url: str, bodies: list[str], rate: float, duration_s: float,
               grace_s: float) -> dict:
    latencies: list[float] = []
    ok_latencies: list[float] = []  # of 2xx answers only
    refused_latencies: list[float] = []  # of 429/503 answers
    errors: dict[str, int] = {}
    retry_after: set[str] = set()  # Retry-After values of 429/503 answers

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def one(session: aiohttp.ClientSession, body: str) -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                if response.status >= 400:
                    error(f"status_{response.status}")
                if response.status in REFUSALS:
                    retry_after.add(response.headers.get("Retry-After", ""))
        except aiohttp.ClientError as exc:
            error(type(exc).__name__)
            return
        latencies.append(time.perf_counter() - started)
        if response.status < 300:
            ok_latencies.append(latencies[-1])
        elif response.status in REFUSALS:
            refused_latencies.append(latencies[-1])

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=duration_s + grace_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks, start = [], time.perf_counter()
        for index in range(int(rate * duration_s)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, bodies[index % len(bodies)])))
        done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
            error("hung")
        elapsed = time.perf_counter() - start
    p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]) * 1e3).tolist() if latencies else (
        0.0, 0.0, 0.0)
    # Throughput over the time until the last answer: it falls below the rate when the
    # server cannot keep up.
    ok = (np.percentile(ok_latencies, [50, 99]) * 1e3).tolist() if ok_latencies else [0, 0]
    refused = ((np.percentile(refused_latencies, [50, 99]) * 1e3).tolist()
               if refused_latencies else [0, 0])
    return {"requests": len(latencies), "duration_s": elapsed, "errors": errors,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "detail": {"sent": len(tasks), "ok": len(ok_latencies), "ok_p50_ms": ok[0],
                       "ok_p99_ms": ok[1], "refused_p50_ms": refused[0],
                       "refused_p99_ms": refused[1], "retry_after": sorted(retry_after)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--grace", type=float, default=30)
    args = parser.parse_args()
    bodies = json.loads(open(args.bodies).read())
    wall = time.perf_counter()
    result = asyncio.run(_run(args.url, bodies, args.rate, args.duration, args.grace))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - wall
    result["loadgen_cpu_share"] = (usage.ru_utime + usage.ru_stime) / (wall * (os.cpu_count() or 1))
    with open(args.out, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
