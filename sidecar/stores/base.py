"""What every revocation store does, apart from where it keeps its revocations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.core.revocation import Held, Posture, Revocation

log = logging.getLogger("auth-sidecar.revocations")

EMBEDDED = "embedded"
"""SIDECAR_REVOCATION_STORE's default: SQLite in SIDECAR_STATE_DIR."""
DATABASE_NAME = "revocations.sqlite3"


@dataclass(frozen=True)
class StoreSettings:
    """SIDECAR_REVOCATION_STORE and its settings; the defaults live in config/settings.py."""

    url: str = field(repr=False)
    """`embedded`, or a `redis://` or `rediss://` URL (which may hold a password)."""
    state_dir: str | None = None
    posture: Posture = field(default_factory=lambda: Posture(max_staleness=10.0))

    @property
    def shown(self) -> str:
        """The store for logs: its scheme and host, never a password."""
        if self.url == EMBEDDED:
            return f"embedded:{self.state_dir}"
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2].partition('/')[0]}"


@dataclass
class Events:
    """What a store reports, for metrics: each is optional."""

    error: Callable[[], None] | None = None
    applied: Callable[[float], None] | None = None
    """Called with the seconds from a revocation's write to its arrival here."""


class Store(Protocol):
    """A place revocations are written to, and read back from by every worker."""

    async def revoke(self, revocation: Revocation) -> None:
        """Stores `revocation` for every worker; raises StoreUnavailable when it cannot."""

    async def follow(self, held: Held, ready: asyncio.Event) -> None:
        """Keeps `held` in step with the store until cancelled, setting `ready` once the first
        full copy is in; reconnects (and resyncs in full) after every failure."""

    async def close(self) -> None:
        """Releases connections."""


class StoreUnavailable(Exception):
    """The store could not be written: nothing was revoked."""


@dataclass
class Backoff:
    """Delays between reconnection attempts: doubling from `first` up to `most`. The sleep is
    injected, so that tests are deterministic."""

    first: float = 0.05
    most: float = 2.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _next: float = 0.0

    def reset(self) -> None:
        self._next = 0.0

    async def wait(self) -> None:
        self._next = min(self.most, self._next * 2 or self.first)
        await self.sleep(self._next)


class Outage:
    """Logs a store's failure once when it starts and once when it ends, never per attempt."""

    def __init__(self, shown: str, events: Events) -> None:
        self._shown = shown
        self._events = events
        self._since: float | None = None

    def failed(self, error: BaseException) -> None:
        if self._events.error:
            self._events.error()
        if self._since is None:
            self._since = time.monotonic()
            log.warning("revocation store %s unavailable: %s", self._shown, error)

    def recovered(self) -> None:
        if self._since is not None:
            log.info(
                "revocation store %s reached again after %.1fs",
                self._shown,
                time.monotonic() - self._since,
            )
            self._since = None
