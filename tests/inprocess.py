"""In-process servers: the real grpc.aio server, as `sidecar.server.start` builds it from a
`Config`, serving inside the test process (as uvicorn's tests run their servers).

The transport is still real (TCP on 127.0.0.1:0 or a Unix socket), but there is no process to
start, and auth_service.py, rpc.py and server.py are covered in the test run itself. Real sidecar
processes (support.start_sidecar) remain for what only a process has: signals, the CLI, logging
to stderr, binding and exit codes.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace

from sidecar.config import Config
from sidecar.runtime import server


@asynccontextmanager
async def serving(config: Config, listen: str = "127.0.0.1:0") -> AsyncIterator[str]:
    """Serves `config` on `listen` in the running event loop; yields the bound address.

    Callers in the same loop must use grpc.aio: a blocking call would stall the server.
    """
    auth, check = server.assemble(config)
    grpc_server, address, _ = await server.start(replace(config, listen=listen), auth, check)
    try:
        yield address
    finally:
        await grpc_server.stop(None)


@contextmanager
def in_thread(config: Config, listen: str = "127.0.0.1:0", timeout: float = 30) -> Iterator[str]:
    """`serving`, in an event loop of its own on a background thread; yields the bound address.

    For blocking clients and module-scoped fixtures, which cannot share the test's loop.
    """
    started: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, str] | BaseException]
    started = queue.Queue()

    async def run() -> None:
        stop = asyncio.Event()
        try:
            async with serving(config, listen) as address:
                started.put((asyncio.get_running_loop(), stop, address))
                await stop.wait()
        except Exception as error:  # noqa: BLE001 - a start-up failure, raised in the caller's thread
            started.put(error)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    result = started.get(timeout=timeout)
    if isinstance(result, BaseException):
        thread.join(timeout)
        raise result
    loop, stop, address = result
    try:
        yield address
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
