"""Revocation shared through a real Redis: two sidecars with two workers each, propagation under
load, Redis killed (both postures), a replica started while Redis is down, and Redis restarted
with its data and without."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer
from support import StartSidecar, unsigned, until
from test_revocation import CHANNELS, revoke_token, stubs, token, until_serving

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar.core.revocation import Held, Kind, Revocation
from sidecar.stores.base import Events
from sidecar.stores.redis import TOKENS_KEY, RedisStore

TRIALS = 20


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


def env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {"AUTH_MODE": "insecure", "SIDECAR_REVOCATION_STORE": redis.url, **extra}


def answer(stub: auth_pb2_grpc.AuthServiceStub, t: str) -> Any:
    """The ValidateResponse, or the status code of a failed call."""
    try:
        return stub.Validate(auth_pb2.ValidateRequest(token=t), timeout=5)
    except grpc.RpcError as error:
        return error.code()


class Load:
    """Threads that keep validating a good token on the given stubs, counting wrong answers."""

    def __init__(self, targets: list[auth_pb2_grpc.AuthServiceStub], good: str) -> None:
        self._stop = threading.Event()
        self.calls = 0
        self.unavailable = 0
        self._threads = [
            threading.Thread(target=self._run, args=(stub, good), daemon=True) for stub in targets
        ]

    def _run(self, stub: auth_pb2_grpc.AuthServiceStub, good: str) -> None:
        while not self._stop.is_set():
            got = answer(stub, good)
            self.calls += 1
            if got == grpc.StatusCode.UNAVAILABLE:
                self.unavailable += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def test_propagation_between_two_sidecars_of_two_workers(
    sidecar_factory: StartSidecar, redis: RedisServer
) -> None:
    a = sidecar_factory(env(redis, SIDECAR_WORKERS="2"))
    b = sidecar_factory(env(redis, SIDECAR_WORKERS="2"))
    until_serving(a.address)
    until_serving(b.address)
    writer = next(stubs(a.address))
    readers = list(stubs(b.address, CHANNELS))
    seconds = []
    with Load(list(stubs(b.address, 2)), token("load")) as load:
        for trial in range(TRIALS):
            t = token(f"p-{trial}-{uuid.uuid4().hex}")
            jti = readers[0].Validate(auth_pb2.ValidateRequest(token=t)).claims["jti"]
            started = time.perf_counter()
            revoke_token(writer, str(jti))
            pending = set(range(CHANNELS))
            while pending:
                for i in list(pending):
                    if answer(readers[i], t).reason == auth_pb2.REASON_REVOKED:
                        pending.discard(i)
                assert time.perf_counter() - started < 5, "not every worker refused it"
            seconds.append(time.perf_counter() - started)
            # After the propagation time, no wrong decision: every connection refuses it.
            assert all(answer(s, t).reason == auth_pb2.REASON_REVOKED for s in readers)
    p50 = statistics.median(seconds)
    p99 = statistics.quantiles(seconds, n=100, method="inclusive")[98]
    print(
        f"propagation over {TRIALS} revocations: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    assert load.calls > 0 and load.unavailable == 0
    assert p99 < 1.0


@pytest.mark.parametrize("posture", ["closed", "open"])
def test_redis_killed_under_load(
    sidecar_factory: StartSidecar, redis: RedisServer, posture: str
) -> None:
    sidecar = sidecar_factory(
        env(redis, SIDECAR_REVOCATION_FAIL=posture, SIDECAR_REVOCATION_MAX_STALENESS_SECONDS="1")
    )
    until_serving(sidecar.address, 1)
    stub = next(stubs(sidecar.address))
    revoked, good = token("k-1"), token("k-2")
    revoke_token(stub, "k-1")
    with Load(list(stubs(sidecar.address, 2)), good) as load:
        redis.kill()
        if posture == "closed":
            # Once the copy is older than the bound: UNAVAILABLE, never a valid answer.
            until(lambda: answer(stub, good) == grpc.StatusCode.UNAVAILABLE, timeout=10)
            assert answer(stub, revoked) == grpc.StatusCode.UNAVAILABLE
        else:
            until(lambda: _stale_health(sidecar.address), timeout=10)
            assert answer(stub, good).valid
            assert answer(stub, revoked).reason == auth_pb2.REASON_REVOKED
        with pytest.raises(grpc.RpcError) as down:
            revoke_token(stub, "k-3")
        assert down.value.code() is grpc.StatusCode.UNAVAILABLE
        redis.start()
        until(lambda: not _stale_health(sidecar.address), timeout=15)
        until(lambda: getattr(answer(stub, good), "valid", False), timeout=15)
    assert answer(stub, revoked).reason == auth_pb2.REASON_REVOKED
    assert (load.unavailable > 0) is (posture == "closed")


def _stale_health(address: str) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="authsidecar.v1.Revocations")
        status = health.Check(request, timeout=5).status
    return bool(status == health_pb2.HealthCheckResponse.NOT_SERVING)


def test_a_replica_started_while_redis_is_down(
    sidecar_factory: StartSidecar, redis: RedisServer
) -> None:
    first = sidecar_factory(env(redis))
    until_serving(first.address, 1)
    revoke_token(next(stubs(first.address)), "d-1")
    redis.kill()
    first.terminate()  # restarted while Redis is down: its copy in memory is gone
    late = sidecar_factory(env(redis))
    stub = next(stubs(late.address))
    # NOT_SERVING, and no valid decision, until the first sync.
    assert _stale_health(late.address)
    assert answer(stub, token("d-2")) == grpc.StatusCode.UNAVAILABLE
    redis.start()
    until(lambda: not _stale_health(late.address), timeout=15)
    assert answer(stub, token("d-1")).reason == auth_pb2.REASON_REVOKED
    assert answer(stub, token("d-2")).valid


def test_redis_restarted_with_its_data_and_without(
    sidecar_factory: StartSidecar, redis: RedisServer
) -> None:
    sidecar = sidecar_factory(env(redis))
    until_serving(sidecar.address, 1)
    stub = next(stubs(sidecar.address))
    t = token("r-1")
    revoke_token(stub, "r-1")
    redis.kill()
    redis.start()  # the append-only file brings the revocation back
    # A replica that starts now knows only what Redis holds.
    fresh = next(stubs(sidecar_factory(env(redis)).address))
    until(lambda: not isinstance(answer(fresh, t), grpc.StatusCode), timeout=15)
    assert answer(fresh, t).reason == auth_pb2.REASON_REVOKED
    assert answer(stub, t).reason == auth_pb2.REASON_REVOKED
    # Redis is the source of truth: restarted empty, its revocations are gone everywhere.
    redis.kill()
    redis.wipe()
    redis.start()
    until(lambda: getattr(answer(stub, t), "valid", False), timeout=15)


def test_a_token_re_encoded_is_still_revoked(
    sidecar_factory: StartSidecar, redis: RedisServer
) -> None:
    address = sidecar_factory(env(redis)).address
    until_serving(address, 1)
    stub = next(stubs(address))
    claims = {"user_id": "alice", "jti": "e-1", "exp": int(time.time()) + 600}
    revoke_token(stub, "e-1")
    # The same claims, encoded differently (another header member): keyed by jti, not bytes.
    other = unsigned(claims, {"alg": "none", "typ": "JWT", "x": 1})
    assert answer(stub, other).reason == auth_pb2.REASON_REVOKED


async def test_the_store_follows_messages_and_refuses_a_foreign_entry(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[int] = []
    arrived: list[float] = []
    events = Events(error=lambda: errors.append(1), applied=arrived.append)
    follower = RedisStore(redis.url, "redis://test", events, ping_seconds=0.05)
    writer = RedisStore(redis.url, "redis://test")
    held, ready = Held(), asyncio.Event()
    task = asyncio.create_task(follower.follow(held, ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        user = Revocation(Kind.USER, "i", "alice", time.time())
        await writer.revoke(user)
        while not held.revoked({"iss": "i", "iat": 1}, "alice"):
            await asyncio.sleep(0.005)  # paces a bounded poll (wait_for above bounds the test)
        assert len(arrived) == 1 and arrived[0] < 1.0
        # An older time for the same user changes nothing (a later time wins, in Redis too).
        await writer.revoke(Revocation(Kind.USER, "i", "alice", 10.0))
        assert len(held) == 1
    finally:
        await stopped(task)
        await writer.close()
    # Something else wrote into the set: no copy is loaded from it, and it is said once.
    client = aioredis.Redis.from_url(redis.url)
    await client.zadd(TOKENS_KEY, {"not json": time.time() + 60})
    await client.aclose()
    held, ready = Held(), asyncio.Event()
    errors.clear()
    task = asyncio.create_task(follower.follow(held, ready))
    try:
        while len(errors) < 3:
            await asyncio.sleep(0.01)  # paces a bounded poll (pytest-timeout bounds the test)
        assert not ready.is_set() and held.synced_at is None
        assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    finally:
        await stopped(task)
    # Every connection is closed once the tasks end (one left open would warn in a later test);
    # Redis drops a closed client from its list as it reads the close, so this is polled.
    checker = aioredis.Redis.from_url(redis.url)
    try:
        deadline = time.monotonic() + 10
        while len(await checker.client_list()) > 1:  # the checker itself
            assert time.monotonic() < deadline, await checker.client_list()
            await asyncio.sleep(0.01)  # paces a bounded poll
    finally:
        await checker.aclose()


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancels a store's follow task and waits for it: it closes its connections as it ends."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
