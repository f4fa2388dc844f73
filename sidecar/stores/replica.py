"""One worker's revocations: its store, its in-memory copy, and the task that keeps them in step."""

from __future__ import annotations

import asyncio
import contextlib
import time

from sidecar.core.revocation import Held, Revocation
from sidecar.stores.base import Events, StoreSettings
from sidecar.stores.open import open_store


class Replica:
    """The store that `settings` names, followed into `held` from `start()` to `stop()`."""

    def __init__(self, settings: StoreSettings, events: Events | None = None) -> None:
        self.settings = settings
        self.held = Held()
        self.ready = asyncio.Event()
        self._store = open_store(settings, events)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._store.follow(self.held, self.ready))

    async def revoke(self, revocation: Revocation) -> None:
        """Stores `revocation` (StoreUnavailable when it cannot), then holds it here at once, so
        that this worker refuses the token before the store's message comes back."""
        await self._store.revoke(revocation)
        self.held.add(revocation)

    def age(self) -> float | None:
        """Seconds since the copy was last confirmed; None before the first sync."""
        synced = self.held.synced_at
        return None if synced is None else time.monotonic() - synced

    def stale(self) -> bool:
        synced = self.held.synced_at
        return synced is None or self.settings.posture.stale(synced, time.monotonic())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._store.close()
