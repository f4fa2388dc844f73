"""Calls as the handlers see them: what the drain waits on, and where metrics hook in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

Meter = Callable[[str], tuple[Callable[[], None], Callable[[float], None]]]
"""rpc name -> (called when a call starts, called with its duration in seconds when it ends)."""


def _unmetered(rpc: str) -> tuple[Callable[[], None], Callable[[float], None]]:
    return _nothing, _discard


def _nothing() -> None:
    pass


def _discard(seconds: float) -> None:
    pass


class Traffic:
    """Counts calls that the server has picked up: `started` ever, `active` right now; and
    meters each one with `meter` (metrics), bound per RPC at registration.

    Plain integers: every handler runs on the one event loop, so no lock is needed.
    """

    def __init__(self, meter: Meter | None = None) -> None:
        self.started = 0
        self.active = 0
        self.meter = meter or _unmetered

    async def settle(
        self, quiet: float, until: float, clock: Callable[[], float] | None = None
    ) -> bool:
        """Waits until no call is active and none has started for `quiet` seconds: True; or
        until the loop time `until` comes first: False.

        Clients that watch health (Envoy's health checks, gRPC's `healthCheckConfig`) and load
        balancers that drop the endpoint stop sending once health says NOT_SERVING; this is how
        the drain knows that they have.
        """
        now = clock or asyncio.get_running_loop().time
        seen = -1
        while now() + quiet <= until:
            if self.active == 0 and self.started == seen:
                return True
            seen = self.started if self.active == 0 else -1
            await asyncio.sleep(quiet)
        return False
