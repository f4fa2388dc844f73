"""How long a revocation takes to reach every worker of another sidecar: real processes, two
sidecars of two workers each, under load.

    .venv/bin/python bench/propagation.py           # 200 revocations per store
    .venv/bin/python bench/propagation.py --smoke   # 10: what CI runs

Redis: a revocation through sidecar A, timed until all of sidecar B's connections (spread over
its workers by SO_REUSEPORT) refuse the token, while two more connections keep B busy. Embedded:
the same within one sidecar of two workers sharing SIDECAR_STATE_DIR. Needs redis-server for the
first. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from redis_server import BINARY, RedisServer
from support import Sidecar, start_sidecar
from test_revocation import CHANNELS, revoke_token, stubs, token, until_serving
from test_revocation_redis import Load, answer

from authsidecar.v1 import auth_pb2


@contextmanager
def sidecars(env: dict[str, str], n: int) -> Iterator[list[Sidecar]]:
    started = [start_sidecar(env, measured=False) for _ in range(n)]
    try:
        yield started
    finally:
        for sidecar in started:
            sidecar.terminate()


def measure(writer: str, reader: str, trials: int) -> list[float]:
    write = next(stubs(writer))
    readers = list(stubs(reader, CHANNELS))
    seconds = []
    with Load(list(stubs(reader, 2)), token("load")):
        for _ in range(trials):
            jti = uuid.uuid4().hex
            t = token(jti)
            assert answer(readers[0], t).valid
            started = time.perf_counter()
            revoke_token(write, jti)
            pending = set(range(CHANNELS))
            while pending:
                for i in list(pending):
                    if answer(readers[i], t).reason == auth_pb2.REASON_REVOKED:
                        pending.discard(i)
            seconds.append(time.perf_counter() - started)
    return seconds


def report(name: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    print(
        f"{name:34} n={len(ms):4} p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  "
        f"max {ms[-1]:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, for CI")
    args = parser.parse_args()
    trials = 10 if args.smoke else 200
    with tempfile.TemporaryDirectory() as directory:
        env = {"AUTH_MODE": "insecure", "SIDECAR_WORKERS": "2", "SIDECAR_STATE_DIR": directory}
        with sidecars(env, 1) as (one,):
            report("embedded, 2 workers of 1 sidecar", measure(one.address, one.address, trials))
        if BINARY is None:
            print("redis-server is not installed: the Redis figures are skipped")
            return
        redis = RedisServer(Path(directory) / "redis")
        redis.start()
        try:
            env = {
                "AUTH_MODE": "insecure",
                "SIDECAR_WORKERS": "2",
                "SIDECAR_REVOCATION_STORE": redis.url,
            }
            with sidecars(env, 2) as (a, b):
                until_serving(a.address)
                until_serving(b.address)
                report("redis, A to 2 workers of B", measure(a.address, b.address, trials))
        finally:
            redis.kill()


if __name__ == "__main__":
    main()
