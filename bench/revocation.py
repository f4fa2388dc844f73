"""What revocation adds to a decision, in process: the same cached decision (the hot path's
common case) with no revocation check, and with the check holding none and 100,000 revocations;
and what the embedded store's poll costs each worker.

    .venv/bin/python bench/revocation.py           # a few seconds
    .venv/bin/python bench/revocation.py --smoke   # what CI runs

The 100,000 are 80,000 tokens, 15,000 users and 5,000 issuers; the token decided is not among
them, so that every lookup runs to its end. Runs are interleaved and the best of several is
printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import insecure_config, unsigned

from sidecar import config
from sidecar.core import cache
from sidecar.core.revocation import Held, Kind, Posture, Revocation, RevokingDecider
from sidecar.stores.sqlite import connect

HELD = 100_000


def filled(n: int, now: float) -> Held:
    held = Held()
    for i in range(n * 80 // 100):
        held.add(Revocation(Kind.TOKEN, "https://id.example", f"jti-{i}", now + 600))
    for i in range(n * 15 // 100):
        held.add(Revocation(Kind.USER, "https://id.example", f"user-{i}", now - 60))
    for i in range(n * 5 // 100):
        held.add(Revocation(Kind.ISSUER, f"https://issuer-{i}.example", "", now))
    held.synced_at = time.monotonic()
    return held


def per_call_us(decide: Callable[[str], object], token: str, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            decide(token)
        calls += 100
    return (time.perf_counter() - start) / calls * 1e6


def poll_us(seconds: float) -> float:
    with tempfile.TemporaryDirectory() as directory:
        connection = connect(Path(directory) / "r.sqlite3")
        pragma = "PRAGMA data_version"
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            connection.execute(pragma).fetchone()
            calls += 1
        connection.close()
        return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    args = parser.parse_args()
    seconds, repeats = (0.05, 2) if args.smoke else (0.5, 7)
    now = time.time()
    cfg = insecure_config()
    cached = cache.caching(config.decider(cfg), 1000, 600, 0)
    claims = {"iss": "https://id.example", "user_id": "alice", "jti": "not-revoked"}
    token = unsigned({**claims, "iat": int(now), "exp": int(now) + 600})
    assert cached.decide(token).valid
    posture = Posture(max_staleness=1e9)  # the check runs; the copy never goes stale here
    deciders = {
        "no check": cached.decide,
        "none held": RevokingDecider(cached, filled(0, now), posture).decide,
        f"{HELD:,} held": RevokingDecider(cached, filled(HELD, now), posture).decide,
    }
    best = dict.fromkeys(deciders, float("inf"))
    for _ in range(repeats):
        for name, decide in deciders.items():
            best[name] = min(best[name], per_call_us(decide, token, seconds))
    base = best["no check"]
    print(f"{'cached decision':16} {'µs':>7} {'added µs':>9}")
    for name, us in best.items():
        print(f"{name:16} {us:7.2f} {us - base:9.2f}")
    print(f"embedded store poll (PRAGMA data_version): {poll_us(seconds * 4):.2f} µs")


if __name__ == "__main__":
    main()
