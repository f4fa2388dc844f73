"""The shared store: Redis 7 or Valkey, for replicas on several hosts (redis-py's asyncio client).

Layout, in one hash slot (`{auth-sidecar}`), so that a cluster keeps it together:
- `{auth-sidecar}:revoked-tokens`, a sorted set: member `[iss, jti]`, score the time the entry
  ends. The score is the entry's TTL: Redis before 7.4 has no TTL per member, and one sorted set
  is read whole with a single command, where a key per entry would need a SCAN of the keyspace.
  Ended entries are removed by every write and skipped by every read.
- `{auth-sidecar}:revoked-before`, a hash: field `[kind, iss, subject]`, value the time before
  which tokens are refused.

A write is one Lua script: it applies the revocation (a later time wins) and publishes it on
`auth-sidecar:revocations`, atomically. Each worker subscribes first, then reads the whole set
(so that nothing written in between is missed), then applies the messages as they come. Any
failure, or a PING unanswered for PING_MISSES intervals, closes the connection; the next one
resyncs in full. Redis is the source of truth: a resync drops what Redis no longer holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sidecar.core.revocation import Held, Kind, Revocation
from sidecar.stores.base import Backoff, Events, Outage, StoreUnavailable

TOKENS_KEY = "{auth-sidecar}:revoked-tokens"
BEFORE_KEY = "{auth-sidecar}:revoked-before"
CHANNEL = "auth-sidecar:revocations"
# A missing PONG is noticed after this many intervals: the connection is then given up.
PING_MISSES = 3
CONNECT_SECONDS = 2.0

_WRITE = """
if ARGV[1] == 'token' then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
else
  local old = redis.call('HGET', KEYS[2], ARGV[2])
  if old and tonumber(old) >= tonumber(ARGV[3]) then return 0 end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[6], ARGV[5])
return 1
"""


def client(url: str) -> aioredis.Redis:
    """A client that never retries on its own: a reconnect must be seen, to resync after it."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_SECONDS,
        socket_timeout=CONNECT_SECONDS * 2,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
    )


class RedisStore:
    """The store at `url`. `sleep` and `clock` are injected for tests."""

    def __init__(
        self,
        url: str,
        shown: str,
        events: Events | None = None,
        ping_seconds: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._events = events or Events()
        self._ping = ping_seconds
        self._sleep = sleep
        self._clock = clock
        self._outage = Outage(shown, self._events)
        self._writer: aioredis.Redis | None = None

    async def revoke(self, revocation: Revocation) -> None:
        if self._writer is None:
            self._writer = client(self._url)
        if revocation.kind is Kind.TOKEN:
            member = json.dumps([revocation.iss, revocation.subject])
        else:
            member = json.dumps([revocation.kind.value, revocation.iss, revocation.subject])
        now = self._clock()
        message = json.dumps(
            [revocation.kind.value, revocation.iss, revocation.subject, revocation.at, now]
        )
        args = (revocation.kind.value, member, repr(revocation.at), repr(now), message, CHANNEL)
        try:
            await self._writer.eval(_WRITE, 2, TOKENS_KEY, BEFORE_KEY, *args)
        except (RedisError, OSError) as error:
            self._outage.failed(error)
            raise StoreUnavailable(f"the revocation store cannot be reached: {error}") from None

    async def follow(self, held: Held, ready: asyncio.Event) -> None:
        backoff = Backoff(sleep=self._sleep)
        while True:
            reader = client(self._url)
            pubsub = reader.pubsub()
            try:
                await self._follow(reader, pubsub, held, ready, backoff)
            except (RedisError, OSError, ValueError) as error:
                self._outage.failed(error)
            finally:
                await _closed(pubsub, reader)
            await backoff.wait()

    async def _follow(
        self,
        reader: aioredis.Redis,
        pubsub: Any,
        held: Held,
        ready: asyncio.Event,
        backoff: Backoff,
    ) -> None:
        await pubsub.subscribe(CHANNEL)
        async with reader.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(TOKENS_KEY, self._clock(), "+inf", withscores=True)
            pipe.hgetall(BEFORE_KEY)
            tokens, before = await pipe.execute()
        held.replace(_entries(tokens, before))
        held.synced_at = time.monotonic()
        self._outage.recovered()
        backoff.reset()
        ready.set()
        answered = True
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._ping)
            if message is None:
                if not answered and time.monotonic() - held.synced_at > self._ping * PING_MISSES:
                    raise RedisError(f"no answer to PING for {self._ping * PING_MISSES:.1f}s")
                await pubsub.ping()
                answered = False
                continue
            answered = True
            held.synced_at = time.monotonic()
            if message["type"] == "message":
                self._apply(held, message["data"])

    def _apply(self, held: Held, data: bytes) -> None:
        kind, iss, subject, at, sent = json.loads(data)
        held.add(Revocation.checked(kind, iss, subject, at))
        if self._events.applied:
            self._events.applied(max(self._clock() - float(sent), 0.0))

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()


async def _closed(pubsub: Any, reader: aioredis.Redis) -> None:
    """Closes both connections even when the task is cancelled meanwhile (a stop): a cancel
    that cut the closing short would leave a socket for the garbage collector."""

    async def close() -> None:
        try:
            await pubsub.aclose()
        finally:
            await reader.aclose()

    closing = asyncio.ensure_future(close())
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await closing
        raise


def _entries(tokens: list[tuple[bytes, float]], before: dict[bytes, bytes]) -> list[Revocation]:
    """The store's contents as revocations. Raises ValueError on an entry it did not write."""
    entries = []
    for member, until in tokens:
        iss, jti = json.loads(member)
        entries.append(Revocation.checked(Kind.TOKEN.value, iss, jti, until))
    for field, at in before.items():
        kind, iss, subject = json.loads(field)
        entries.append(Revocation.checked(kind, iss, subject, float(at)))
    return entries
