"""The store that the settings name."""

from __future__ import annotations

from pathlib import Path

from sidecar.stores.base import DATABASE_NAME, EMBEDDED, Events, Store, StoreSettings
from sidecar.stores.redis import RedisStore
from sidecar.stores.sqlite import SqliteStore

# Redis is pinged this often at most, and at least four times within the staleness bound.
PING_SECONDS = 1.0


def open_store(settings: StoreSettings, events: Events | None = None) -> Store:
    if settings.url == EMBEDDED:
        assert settings.state_dir is not None  # noqa: S101 - the loader requires it
        return SqliteStore(Path(settings.state_dir) / DATABASE_NAME, events)
    ping = min(PING_SECONDS, settings.posture.max_staleness / 4)
    return RedisStore(settings.url, settings.shown, events, ping_seconds=ping)
