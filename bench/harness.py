"""What the benchmarks share: starting real servers, and reading their memory from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    """A real server process; `address` is the `host:port` it reported."""

    process: subprocess.Popen[bytes]
    address: str

    def pids(self) -> list[int]:
        """The process and its children (a supervisor's workers)."""
        return [self.process.pid, *_children(self.process.pid)]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: servers, and a supervisor's workers under it."""
    found = []
    for child in _children(pid):
        found += [child, *descendants(child)]
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time used so far by `pids` (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pids: Sequence[int], field: str = "VmRSS") -> int:
    """The sum of `field` (VmRSS, or VmHWM for the peak) over `pids`, in KiB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(field + ":"):
                total += int(line.split()[1])
    return total


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The file's text once it appears; a bounded poll, failing if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text().strip()
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before ready")
        time.sleep(0.02)
    raise RuntimeError(f"{process.args!r} was not ready within {timeout}s")


@contextmanager
def start_sidecar(
    env: Mapping[str, str], directory: str, args: Sequence[str] = (), name: str = "sidecar"
) -> Iterator[Server]:
    """`auth-sidecar serve` on a free port; yields once it (every worker) serves."""
    ready = Path(directory) / f"{name}.ready"
    ready.unlink(missing_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "SIDECAR_"))}
    full.update({"SIDECAR_LISTEN": "127.0.0.1:0", "SIDECAR_LOG_LEVEL": "warning", **env})
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--ready-file", str(ready), *args],
        env=full,
        stdin=subprocess.DEVNULL,
    )
    with _stopping(process):
        yield Server(process, wait_for_file(ready, process))


@contextmanager
def start_process(
    argv: Sequence[str], ready: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """Any server that writes its address to `ready` once it serves."""
    process = subprocess.Popen(
        list(argv), env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL
    )
    with _stopping(process):
        yield Server(process, wait_for_file(ready, process))


@contextmanager
def start_listening(
    argv: Sequence[str], port: int, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server that writes no ready file (nginx, Caddy): yields once 127.0.0.1:`port` accepts
    connections; a bounded poll, failing (with its `log`) if the process exits first."""
    timeout = 30
    with log.open("wb") as output:  # the child keeps its own copy
        process = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    with _stopping(process):
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    why = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{argv[0]} did not listen on {port}: {why}") from None
                time.sleep(0.02)
        yield process


@contextmanager
def _stopping(process: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
