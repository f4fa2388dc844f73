"""Calls as the handlers see them: what the drain waits on, and where metrics hook in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

Timer = Callable[[str], Callable[[float], None]]
"""rpc name -> a function that records one call's duration in seconds."""


def _untimed(rpc: str) -> Callable[[float], None]:
    return _discard


def _discard(seconds: float) -> None:
    pass


class Traffic:
    """Counts calls that the server has picked up: `started` ever, `active` right now; and
    times each one with `timer` (metrics), bound per RPC at registration.

    Plain integers: every handler runs on the one event loop, so no lock is needed.
    """

    def __init__(self, timer: Timer | None = None) -> None:
        self.started = 0
        self.active = 0
        self.timer = timer or _untimed

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
