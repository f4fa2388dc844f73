"""Hot reload: SIGHUP, or a changed file, re-reads the configuration and swaps it whole.

A reload that fails keeps the running configuration and logs one line per problem. A good one
is applied by reference (see `AuthService.swap`): a call in flight finishes with the config it
started with, and no call sees half of each. Key sets fetched from URLs are carried over when
their source is unchanged, and a new source must deliver its first set before the swap, so that
a reload never makes the sidecar forget its keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sidecar.config import Config
from sidecar.core.errors import ConfigError
from sidecar.keys.fetch import FetchHook, Refresher
from sidecar.keys.jwks import JwksVerifier

log = logging.getLogger("auth-sidecar.reload")

Signature = tuple[tuple[int, int, int] | None, ...]


def signature(files: tuple[str, ...]) -> Signature:
    """What changes when a file is rewritten or a Kubernetes Secret swaps its symlink."""
    marks: list[tuple[int, int, int] | None] = []
    for path in files:
        try:
            st = os.stat(path)  # follows symlinks: a swapped link shows the new target
        except OSError:
            marks.append(None)
        else:
            marks.append((st.st_mtime_ns, st.st_ino, st.st_size))
    return tuple(marks)


class KeyFetchers:
    """The running Refreshers, one per remote key source, kept across reloads."""

    def __init__(self, on_fetch: FetchHook | None = None) -> None:
        """`on_fetch(source, ok)` is told of every fetch's outcome (metrics)."""
        self._running: dict[Any, tuple[Refresher, asyncio.Task[None]]] = {}
        self._on_fetch = on_fetch

    @property
    def refreshers(self) -> list[Refresher]:
        return [refresher for refresher, _ in self._running.values()]

    async def adopt(self, config: Config) -> tuple[Config, dict[Any, Refresher]] | str:
        """`config` with each unchanged remote source's live verifier, plus the new sources'
        refreshers after their first good fetch; or why a new source could not be fetched."""
        fresh: dict[Any, Refresher] = {}
        issuers = []
        for issuer in config.issuers or (config,):
            remote, verifier = issuer.remote, issuer.verifier
            if remote is None or not isinstance(verifier, JwksVerifier):
                issuers.append(issuer)
                continue
            key = (remote, verifier.algorithms, issuer.fetch)
            running = self._running.get(key)
            if running is not None:
                issuer = replace(issuer, verifier=running[0].verifier)
            elif key in fresh:  # two issuers with one source share its keys
                issuer = replace(issuer, verifier=fresh[key].verifier)
            else:
                refresher = Refresher(remote, verifier, issuer.fetch, on_fetch=self._on_fetch)
                if not await refresher.refresh():
                    return f"the keys from {remote.url} could not be fetched"
                fresh[key] = refresher
            issuers.append(issuer)
        if config.issuers:
            return replace(config, issuers=tuple(issuers)), fresh
        return issuers[0], fresh

    def initial(self, config: Config) -> dict[Any, Refresher]:
        """Refreshers for every remote source, not fetched yet: start-up never waits for them."""
        return {
            (c.remote, c.verifier.algorithms, c.fetch): Refresher(
                c.remote, c.verifier, c.fetch, on_fetch=self._on_fetch
            )
            for c in config.issuers or (config,)
            if c.remote is not None and isinstance(c.verifier, JwksVerifier)
        }

    def start(self, config: Config, fresh: dict[Any, Refresher]) -> None:
        """Runs the new refreshers and stops those that `config` no longer uses."""
        wanted = {
            (c.remote, c.verifier.algorithms, c.fetch)
            for c in config.issuers or (config,)
            if c.remote is not None and isinstance(c.verifier, JwksVerifier)
        }
        for key in list(self._running):
            if key not in wanted:
                self._running.pop(key)[1].cancel()
        for key, refresher in fresh.items():
            self._running[key] = (refresher, asyncio.create_task(refresher.run()))

    def stop(self) -> None:
        for _, task in self._running.values():
            task.cancel()
        self._running.clear()


class Reloader:
    """Re-reads the configuration on request or when its files change, and applies it."""

    def __init__(
        self,
        load: Callable[[], Config],
        config: Config,
        apply: Callable[[Config], None],
        fetchers: KeyFetchers,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        """`on_reload(ok)` is told of every reload's outcome (metrics)."""
        self._load = load
        self._on_reload = on_reload
        self._apply = apply
        self._fetchers = fetchers
        self._sleep = sleep
        self._files = config.files
        self._seen = signature(config.files)
        self._lock = asyncio.Lock()
        self.reloads = 0
        self.failures = 0

    async def reload(self, why: str) -> bool:
        """One reload; True when the new configuration is running."""
        async with self._lock:  # SIGHUP during a poll-triggered reload: one after the other
            self._seen = signature(self._files)
            try:
                loaded = self._load()
            except ConfigError as error:
                return self._failed(why, error.problems)
            adopted = await self._fetchers.adopt(loaded)
            if isinstance(adopted, str):
                return self._failed(why, [adopted])
            config, fresh = adopted
            self._apply(config)
            self._fetchers.start(config, fresh)
            self._files = config.files
            self._seen = signature(config.files)
            self.reloads += 1
            if self._on_reload:
                self._on_reload(True)
            log.info("reloaded (%s): %s", why, config.describe())
            return True

    async def poll(self, seconds: float) -> None:
        """Reloads whenever a watched file changes; checks every `seconds`, until cancelled."""
        while True:
            await self._sleep(seconds)
            if signature(self._files) != self._seen:
                await self.reload("a configuration file changed")

    def _failed(self, why: str, problems: list[str]) -> bool:
        self.failures += 1
        if self._on_reload:
            self._on_reload(False)
        for problem in problems:
            log.error("reload (%s) failed, keeping the running configuration: %s", why, problem)
        return False
