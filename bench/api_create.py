"""Benchmark: POST /api/tickets on loopback against the ASGI server (uvicorn).

Starts the local services, an ASGI server and a Celery worker (unless --url is given),
then sends --requests ticket creations with --concurrency keep-alive clients and prints
requests/s and p50/p99 latency. Loopback only, bounded in count and time.

    .venv/bin/python bench/api_create.py [--requests 3000] [--concurrency 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness


async def drive(
    url: str, key: str, total: int, concurrency: int, deadline: float
) -> tuple[list[float], int, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal errors
        client = _harness.KeepAliveClient(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                body = json.dumps(
                    {
                        "subject": f"Bench ticket {i}",
                        "description": "My order has not arrived and I need help.",
                        "customer": {
                            "email": f"bench{i % 500}@example.com",
                            "name": f"Bench {i % 500}",
                        },
                        "channel": "api",
                    }
                ).encode()
                started = time.perf_counter()
                status, _ = await client.request("POST", "/api/tickets", body, headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 201:
                    errors += 1
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return latencies, errors, int(elapsed * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3, help="uvicorn worker processes")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="measure the API alone: no Celery worker competing for the CPU "
        "(routing, sentiment... then run after the bench)",
    )
    parser.add_argument("--url", help="use an already running server (and its API key)")
    parser.add_argument("--api-key", help="with --url: an agent's API key")
    args = parser.parse_args()

    env = _harness.setup_env()
    if not args.url:
        _harness.forget_pending_events()
    key = args.api_key or _harness.bench_api_key()
    if args.url:
        url = args.url.rstrip("/")
        runners: list[list[str]] = []
    else:
        port = _harness.free_port()
        url = f"http://127.0.0.1:{port}"
        runners = [_harness.uvicorn_cmd(port, args.workers)]
        if not args.no_worker:
            runners.append(_harness.celery_cmd(1))
    with _harness.processes(runners, env):
        _harness.wait_for(f"{url}/health")
        deadline = time.monotonic() + args.max_seconds
        asyncio.run(drive(url, key, args.warmup, args.concurrency, deadline))
        latencies, errors, elapsed_ms = asyncio.run(
            drive(url, key, args.requests, args.concurrency, deadline)
        )
    if not args.url:
        _harness.drop_queued_tasks(env)
    done = len(latencies)
    print(
        f"POST /api/tickets: {done} requests, concurrency {args.concurrency}, "
        f"{args.workers} uvicorn workers, "
        f"{'no Celery worker' if args.no_worker else 'a Celery worker running'}"
    )
    print(f"  throughput  {done / (elapsed_ms / 1000):.0f} creates/s")
    print(
        f"  latency p50 {_harness.percentile(latencies, 50):.1f} ms   "
        f"p99 {_harness.percentile(latencies, 99):.1f} ms   "
        f"max {max(latencies):.1f} ms"
    )
    print(f"  errors      {errors}")


if __name__ == "__main__":
    main()
