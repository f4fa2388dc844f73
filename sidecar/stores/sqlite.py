"""The embedded store: one SQLite database in WAL mode, shared by the workers of one host.

Why SQLite rather than the supervisor as the one owner: it also serves a single process and the
CLI, it survives a restart of everything (the file is the source of truth), and WAL lets every
worker read while one writes. Each worker polls `PRAGMA data_version` (a read of a counter in
shared memory, about 2 µs) every POLL_SECONDS, and reads only the rows written since its last
read (`seq` is the write's order), so a revocation reaches every worker within one poll.

A write is one transaction with `synchronous=FULL`: once Revoke answers, the revocation is on
disk. Token revocations past their time are deleted as writes come.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sidecar.core.revocation import Held, Kind, Revocation
from sidecar.stores.base import Backoff, Events, Outage, StoreUnavailable

POLL_SECONDS = 0.01
# Expired token revocations leave the memory of a worker this often.
PRUNE_SECONDS = 60.0
BUSY_MILLISECONDS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revocations (
    kind TEXT NOT NULL,
    iss TEXT NOT NULL,
    subject TEXT NOT NULL,
    at REAL NOT NULL,
    seq INTEGER NOT NULL,
    written REAL NOT NULL,
    PRIMARY KEY (kind, iss, subject)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revocations_seq ON revocations (seq);
"""
# A later time wins, as in Held.add; `seq` orders the writes for the workers' reads.
_UPSERT = """
INSERT INTO revocations (kind, iss, subject, at, seq, written)
VALUES (?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM revocations), ?)
ON CONFLICT (kind, iss, subject) DO UPDATE
SET at = excluded.at, seq = excluded.seq, written = excluded.written
WHERE excluded.at > revocations.at
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with the schema in place. Raises sqlite3.Error."""
    connection = sqlite3.connect(path, timeout=BUSY_MILLISECONDS / 1000, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    return connection


class SqliteStore:
    """The embedded store at `path`. `sleep` and `clock` are injected for tests."""

    def __init__(
        self,
        path: Path,
        events: Events | None = None,
        poll_seconds: float = POLL_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._events = events or Events()
        self._poll = poll_seconds
        self._sleep = sleep
        self._clock = clock
        self._outage = Outage(f"embedded:{path}", self._events)

    async def revoke(self, revocation: Revocation) -> None:
        try:
            await asyncio.to_thread(self.write, revocation)
        except sqlite3.Error as error:
            self._outage.failed(error)
            raise StoreUnavailable(f"the embedded revocation store failed: {error}") from None

    def write(self, revocation: Revocation) -> None:
        """The blocking write: the CLI calls it directly."""
        now = self._clock()
        connection = connect(self.path)
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(
                    _UPSERT,
                    (revocation.kind.value, revocation.iss, revocation.subject, revocation.at, now),
                )
                connection.execute(
                    "DELETE FROM revocations WHERE kind = ? AND at <= ?", (Kind.TOKEN.value, now)
                )
        finally:
            connection.close()

    async def follow(self, held: Held, ready: asyncio.Event) -> None:
        backoff = Backoff(sleep=self._sleep)
        while True:
            try:
                connection = connect(self.path)
            except sqlite3.Error as error:
                self._outage.failed(error)
                await backoff.wait()
                continue
            try:
                await self._follow(connection, held, ready, backoff)
            except sqlite3.Error as error:
                self._outage.failed(error)
                await backoff.wait()
            finally:
                connection.close()

    async def _follow(
        self, connection: sqlite3.Connection, held: Held, ready: asyncio.Event, backoff: Backoff
    ) -> None:
        rows = connection.execute("SELECT kind, iss, subject, at, seq, written FROM revocations")
        seen = 0
        entries = []
        for kind, iss, subject, at, seq, _ in rows:
            entries.append(Revocation(Kind(kind), iss, subject, at))
            seen = max(seen, seq)
        held.replace(entries)
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        held.synced_at = time.monotonic()
        self._outage.recovered()
        backoff.reset()
        ready.set()
        pruned = time.monotonic()
        while True:
            await self._sleep(self._poll)
            now = connection.execute("PRAGMA data_version").fetchone()[0]
            if now != version:
                version = now
                seen = self._read_since(connection, held, seen)
            held.synced_at = time.monotonic()
            if held.synced_at - pruned >= PRUNE_SECONDS:
                held.prune()
                pruned = held.synced_at

    def _read_since(self, connection: sqlite3.Connection, held: Held, seen: int) -> int:
        rows = connection.execute(
            "SELECT kind, iss, subject, at, seq, written FROM revocations WHERE seq > ?",
            (seen,),
        ).fetchall()
        now = self._clock()
        for kind, iss, subject, at, seq, written in rows:
            held.add(Revocation(Kind(kind), iss, subject, at))
            seen = max(seen, seq)
            if self._events.applied:
                self._events.applied(max(now - written, 0.0))
        return seen

    async def close(self) -> None:
        return None
