"""Introspection under a load of repeated opaque tokens: calls made, the cache's hit rate, and
the cost of a decision from a kept answer. In process, against a real HTTP endpoint on
127.0.0.1 (tests/test_introspection.py's), through the sidecar's own decider and fetch.

    .venv/bin/python bench/introspection.py           # 200 tokens, 100 uses each, 50 at once
    .venv/bin/python bench/introspection.py --smoke   # 20 tokens, 10 uses each: what CI runs

Each use of a token is one request, in a seeded random order, up to 50 in flight: the first
requests for a token wait for its one call, the rest find its answer. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_introspection import Endpoint, active, build

from sidecar.core.errors import IntrospectionNeeded


async def load(tokens: int, uses: int, in_flight: int) -> dict[str, Any]:
    endpoint = Endpoint()
    try:
        for n in range(tokens):
            endpoint.answers[f"opaque-{n}"] = active(f"user-{n}", exp=int(time.time()) + 3600)
        decider, introspector, cache = build(endpoint, time.time, rate=100000, size=1024)
        order = [f"opaque-{n}" for n in range(tokens) for _ in range(uses)]
        random.Random(7).shuffle(order)  # noqa: S311 - an order of requests, not a secret
        limit = asyncio.Semaphore(in_flight)

        async def one(token: str) -> None:
            async with limit:
                try:
                    decision = decider.decide(token)
                except IntrospectionNeeded as needed:
                    await needed.fetch()
                    decision = decider.decide(token)
                assert decision.valid, decision.message

        start = time.perf_counter()
        await asyncio.gather(*(one(t) for t in order))
        elapsed = time.perf_counter() - start
        hit_start = time.perf_counter()
        for token in order[:10000]:
            decider.decide(token)
        per_hit = (time.perf_counter() - hit_start) / min(len(order), 10000) * 1e6
        return {
            "requests": len(order),
            "calls": introspector.calls,
            "endpoint_calls": len(endpoint.calls),
            "hit_rate": cache.hits / (cache.hits + cache.misses),
            "requests_per_s": len(order) / elapsed,
            "us_per_kept_decision": per_hit,
        }
    finally:
        endpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    args = parser.parse_args()
    tokens, uses = (20, 10) if args.smoke else (200, 100)
    result = asyncio.run(load(tokens, uses, 50))
    for name, value in result.items():
        print(f"{name:22} {value:.3f}" if isinstance(value, float) else f"{name:22} {value}")


if __name__ == "__main__":
    main()
