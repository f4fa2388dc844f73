"""The event loop the server runs on: uvloop when it is installed (the default), else asyncio's.

uvloop (libuv) spends less CPU per gRPC call than asyncio's own loop: measured, 17% more Validate
calls per second for the sidecar and 31% for a bare grpc.aio server (docs/performance.md).
`SIDECAR_EVENT_LOOP=asyncio` is the way back, should a platform or a bug call for it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

LOOPS: Final = ("auto", "asyncio", "uvloop")


def has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def runner(name: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    """What runs the server's main coroutine for SIDECAR_EVENT_LOOP=`name` (one of LOOPS)."""
    if name == "uvloop" or (name == "auto" and has_uvloop()):
        import uvloop

        return uvloop.run
    return asyncio.run
