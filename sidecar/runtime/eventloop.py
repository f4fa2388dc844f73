"""The event loop the server runs on: uvloop when it is installed (the default), else asyncio's.

uvloop (libuv) spends less CPU per gRPC call than asyncio's own loop: measured, 17% more Validate
calls per second for the sidecar and 31% for a bare grpc.aio server (docs/performance.md).
`SIDECAR_EVENT_LOOP=asyncio` is the way back, should a platform or a bug call for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sidecar.config import parsers

T = TypeVar("T")


def runner(name: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    """What runs the server's main coroutine for SIDECAR_EVENT_LOOP=`name` (see EVENT_LOOPS)."""
    if name == "uvloop" or (name == "auto" and parsers.has_uvloop()):
        import uvloop

        return uvloop.run
    return asyncio.run
