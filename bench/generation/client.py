"""The generation benchmark's load generator: ``clients`` closed-loop clients streaming
Server-Sent Events, one process of its own (``python -m bench.generation.client``) so its
work never shares an interpreter with a server or the harness.

Client ``i`` sends requests ``i``, ``i + clients``... of the list, each as soon as its
previous answer ended, from the start of the warm-up to the end of the measured window;
answers still streaming then may finish during ``drain_s`` and are cut after it. Each
request's record: when it was sent, when each chunk holding text arrived, the token count
the server reported (``usage.completion_tokens`` or ``details.generated_tokens``) and any
error. ``bench.generation.metrics`` turns the records into tokens/s and TTFT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

CUT = "cut after the drain"


def _text_and_tokens(event: dict[str, Any]) -> tuple[str, int | None]:
    """The new text of one SSE event and the token count if it carries one (either dialect:
    OpenAI completion chunks or TGI token events)."""
    if "choices" in event or "usage" in event:  # OpenAI
        text = "".join(choice.get("text") or "" for choice in event.get("choices") or [])
        usage = event.get("usage")
        return text, usage.get("completion_tokens") if usage else None
    if "error" in event:
        raise RuntimeError(f"error event: {event['error']}")
    text = (event.get("token") or {}).get("text") or ""
    details = event.get("details")
    return text, details.get("generated_tokens") if details else None


async def _one(session: Any, url: str, body: str, origin: float) -> dict[str, Any]:
    record: dict[str, Any] = {"sent": time.perf_counter() - origin, "chunks": [],
                              "tokens": None, "end": None, "error": None}
    try:
        async with session.post(url, data=body,
                                headers={"Content-Type": "application/json"}) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                raise RuntimeError(f"HTTP {response.status}: {text}")
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                text, tokens = _text_and_tokens(json.loads(data))
                if text:
                    record["chunks"].append(time.perf_counter() - origin)
                if tokens is not None:
                    record["tokens"] = tokens
        record["end"] = time.perf_counter() - origin
    except asyncio.CancelledError:
        record["error"] = CUT
    except Exception as exc:  # recorded, never fatal: the report counts errors
        record["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return record


async def run(url: str, bodies: list[str], clients: int, warmup_s: float, duration_s: float,
              drain_s: float, stall_s: float = 180) -> dict[str, Any]:
    """Drive the load; returns ``{"window": [start, end], "records": [...]}`` (seconds
    from the start of the warm-up). A stream silent for ``stall_s`` is cut (an error): a
    server that lost a request must not hold a client for the rest of the run."""
    import aiohttp

    origin = time.perf_counter()
    stop_at = warmup_s + duration_s
    records: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=stall_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client(offset: int) -> None:
            index = offset
            while time.perf_counter() - origin < stop_at:
                record = await _one(session, url, bodies[index % len(bodies)], origin)
                record["index"] = index % len(bodies)
                records.append(record)
                index += clients

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.sleep(max(0.0, stop_at - (time.perf_counter() - origin)))
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        for task in pending:  # each appends its cut record before ending
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return {"window": [warmup_s, stop_at], "records": records,
            "elapsed_s": time.perf_counter() - origin}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.generation.client")
    parser.add_argument("--spec", type=Path, required=True,
                        help="JSON: url, bodies, clients, warmup_s, duration_s, drain_s, "
                        "stall_s")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    result = asyncio.run(run(**spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["cpus"] = os.cpu_count() or 1
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
