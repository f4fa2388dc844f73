"""Runs N server processes on one TCP port, so that the sidecar uses every core.

Python serves one core per process. The workers are ordinary `serve` processes that bind the same
port with SO_REUSEPORT, and the kernel spreads connections across them. Each worker loads the
same configuration and keys, so they decide alike; a reload is a signal the supervisor forwards.

The supervisor:
- checks, before any worker starts, that nothing else holds the port (a plain bind, without
  SO_REUSEPORT), then holds the port itself until it exits, with a bound socket that never
  listens: a second sidecar therefore fails to start, as with one process, instead of sharing
  the traffic;
- does the same for the HTTP API (SIDECAR_HTTP_API_LISTEN) and the HTTP side listener
  (SIDECAR_HTTP_LISTEN), which every worker serves on the one port too, and gives the workers
  a private directory for prometheus_client's multiprocess mode, so that `/metrics`, whichever
  worker answers, counts them all;
- writes `--ready-file` once, when every worker serves;
- restarts a worker that dies, at most once a second per worker;
- forwards SIGHUP, and on SIGTERM or SIGINT lets all workers drain and exits when they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from prometheus_client import multiprocess

from sidecar.config import Config
from sidecar.core.errors import BindError
from sidecar.observe.metrics import MULTIPROCESS_DIR_ENV
from sidecar.runtime.server import write_ready_file

log = logging.getLogger("auth-sidecar")

# A worker that dies sooner than this after starting is restarted only after this long.
RESTART_DELAY_SECONDS = 1.0
# How long start-up may take for every worker to serve.
START_TIMEOUT_SECONDS = 60.0
# The bounded poll for a worker's ready file.
_POLL_SECONDS = 0.02


def run(config: Config, serve_argv: Sequence[str]) -> int:
    """Supervises `config.workers` copies of `auth-sidecar <serve_argv>`; returns the exit code."""
    return asyncio.run(Supervisor(config, serve_argv).run())


def reserve(listen: str, variable: str = "SIDECAR_LISTEN") -> tuple[list[socket.socket], str]:
    """Checks that nobody holds `listen`, then holds it with SO_REUSEPORT sockets that never
    listen. Returns them and the address with the actual port (for `:0`). `variable` names the
    setting in errors."""
    host, _, port_text = listen.rpartition(":")
    name = host[1:-1] if host.startswith("[") else host
    try:
        infos = socket.getaddrinfo(
            name, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise BindError(f"{variable}: cannot listen on {listen}: {error.strerror}") from None
    port = int(port_text)
    holders: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sockaddr = (address[0], port, *address[2:])
            for reuse in (False, True):  # probe plainly first: any holder at all refuses it
                held = socket.socket(family, kind, proto)
                if reuse:
                    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                try:
                    held.bind(sockaddr)
                except OSError as error:
                    held.close()
                    reason = (
                        "another process serves there"
                        if error.errno == 98  # EADDRINUSE
                        else error.strerror
                    )
                    raise BindError(f"{variable}: cannot listen on {listen}: {reason}") from None
                port = held.getsockname()[1]
                sockaddr = (address[0], port, *address[2:])
                if reuse:
                    holders.append(held)
                else:
                    held.close()
    except BaseException:
        for held in holders:
            held.close()
        raise
    return holders, f"{host}:{port}"


class Supervisor:
    """One supervisor process: its workers, its signals and its ready file."""

    def __init__(
        self,
        config: Config,
        serve_argv: Sequence[str],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._argv = list(serve_argv)
        self._sleep = sleep
        self._workers: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._serving: set[int] = set()
        self._all_serving = asyncio.Event()
        self._failed: int | None = None
        self._error: BindError | None = None
        self._http_api: str | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        holders, address = reserve(self._config.listen)
        http: str | None = None
        try:
            if self._config.http_listen:
                more, http = reserve(self._config.http_listen, "SIDECAR_HTTP_LISTEN")
                holders += more
            if self._config.http_api_listen:
                more, self._http_api = reserve(
                    self._config.http_api_listen, "SIDECAR_HTTP_API_LISTEN"
                )
                holders += more
            with tempfile.TemporaryDirectory(prefix="auth-sidecar-") as directory:
                metrics = Path(directory) / "metrics" if http else None
                if metrics:
                    metrics.mkdir()
                slots = [
                    asyncio.create_task(self._keep(slot, address, http, Path(directory), metrics))
                    for slot in range(self._config.workers)
                ]
                code = await self._serve(address, http)
                self._stopping.set()
                self._forward(signal.SIGTERM)
                codes = await asyncio.gather(*slots)
        finally:
            for held in holders:
                held.close()
        if self._error is not None:
            raise self._error
        log.info("stopped")
        # A worker that had not yet set its handlers when SIGTERM came was stopped by it: fine.
        failed = [c for c in codes if c not in (0, -signal.SIGTERM)]
        return code or (1 if failed else 0)

    async def _serve(self, address: str, http: str | None) -> int:
        """Waits for every worker to serve, writes the ready file, then waits for a signal."""
        started = asyncio.ensure_future(self._all_serving.wait())
        stopped = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait(
            (started, stopped), timeout=START_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        started.cancel()
        if started not in done:
            stopped.cancel()
            if self._failed is not None:
                return self._failed
            if stopped in done:
                return 0
            log.error("the workers did not all serve within %ss", START_TIMEOUT_SECONDS)
            return 1
        log.info(
            "%d workers serving %s%s%s",
            self._config.workers,
            address,
            f" http={http}" if http else "",
            f" http_api={self._http_api}" if self._http_api else "",
        )
        if self._config.ready_file:
            try:
                write_ready_file(self._config.ready_file, address)
            except OSError as error:
                # Raised once the workers are stopped, so that it is the last line.
                self._error = BindError(
                    f"SIDECAR_READY_FILE: cannot write {self._config.ready_file}: {error.strerror}"
                )
                stopped.cancel()
                return 2
        await stopped
        log.info("draining %d workers", len(self._workers))
        return 0

    async def _keep(
        self, slot: int, address: str, http: str | None, directory: Path, metrics: Path | None
    ) -> int:
        """Runs worker `slot` until the supervisor stops; returns its last exit code. With the
        side listener on `http`, the workers record their metrics in `metrics`."""
        ready = directory / f"worker-{slot}"
        extra = ["--http-listen", http] if http else []
        if self._http_api:
            extra += ["--http-api-listen", self._http_api]
        env = {**os.environ, MULTIPROCESS_DIR_ENV: str(metrics)} if metrics else None
        while True:
            ready.unlink(missing_ok=True)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sidecar",
                *self._argv,
                # Flags win over the environment, and the last of a repeated flag wins.
                "--workers",
                "1",
                "--listen",
                address,
                "--ready-file",
                str(ready),
                *extra,
                "--worker",
                # Never written: when the supervisor dies, the worker reads end of file and
                # drains, rather than serving on as an orphan.
                stdin=asyncio.subprocess.PIPE,
                env=env,
            )
            self._workers[slot] = process
            born = time.monotonic()
            waiting = asyncio.ensure_future(process.wait())
            while not waiting.done() and not ready.exists():
                await asyncio.wait((waiting,), timeout=_POLL_SECONDS)
            if not waiting.done():
                log.info("worker %d serving (pid %d)", slot, process.pid)
                self._serving.add(slot)
                if len(self._serving) == self._config.workers:
                    self._all_serving.set()
            code = await waiting
            self._serving.discard(slot)
            del self._workers[slot]
            if metrics:
                # Its calls in flight are no longer in flight; its counters still count.
                multiprocess.mark_process_dead(process.pid, str(metrics))
            if self._stopping.is_set():
                return code
            if not self._all_serving.is_set():
                # Start-up failed (the worker said why): stop everything, with its code.
                self._failed = code if code > 0 else 1
                self._stopping.set()
                return self._failed
            log.warning("worker %d (pid %d) exited with %d; restarting", slot, process.pid, code)
            if time.monotonic() - born < RESTART_DELAY_SECONDS:
                await self._sleep(RESTART_DELAY_SECONDS)
                if self._stopping.is_set():
                    return code

    def _forward(self, signum: int) -> None:
        for process in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
