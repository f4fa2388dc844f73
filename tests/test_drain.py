"""The drain under steady load: real sidecar processes, real clients that never retry, SIGTERM.

Each client thread has its own channel and calls Validate back to back, through the signal and
until the process has gone. Every call ends OK or UNAVAILABLE (the server has gone: try another),
never CANCELLED, and the process exits within its grace period.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import pytest
from support import Sidecar, StartSidecar, unsigned

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar.observe.traffic import Traffic

# What Envoy's health-checked clusters and gRPC clients with client-side health checking do: a
# NOT_SERVING backend gets no new calls. No retries: a failed call is counted, not hidden.
HEALTH_CHECKED = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [],
    }
)
CLIENTS = 6
WARM_CALLS = 50  # per client, before the signal: the load is steady by then


@dataclass
class Load:
    """`clients` threads calling Validate back to back until `stop` is set."""

    address: str
    options: list[tuple[str, object]]
    codes: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warm: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int) -> None:
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self._threads:
            thread.start()
        for _ in range(clients):
            assert self._warm.acquire(timeout=30), "a client never got its calls through"

    def finish(self) -> Counter[str]:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.codes

    def _client(self) -> None:
        request = auth_pb2.ValidateRequest(token=unsigned({"sub": "steady"}))
        codes: Counter[str] = Counter()
        with grpc.insecure_channel(
            self.address, options=[("grpc.enable_retries", 0), *self.options]
        ) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            while not self.stop.is_set():
                try:
                    stub.Validate(request, timeout=10)
                    codes["OK"] += 1
                    if codes["OK"] == WARM_CALLS:
                        self._warm.release()
                except grpc.RpcError as error:
                    codes[error.code().name] += 1
        with self._lock:
            self.codes.update(codes)


def _through_sigterm(sidecar: Sidecar, load: Load) -> tuple[Counter[str], float]:
    """Starts `load`, sends SIGTERM once it is steady; returns the codes and the exit time."""
    load.start(CLIENTS)
    signalled = time.monotonic()
    sidecar.send(signal.SIGTERM)
    try:
        assert sidecar.wait(30) == 0
    finally:
        elapsed = time.monotonic() - signalled
        codes = load.finish()
    return codes, elapsed


@pytest.mark.parametrize("workers", [1, 2])
def test_health_checked_clients_never_see_a_cancelled_call(
    sidecar_factory: StartSidecar, workers: int
) -> None:
    grace = 10
    sidecar = sidecar_factory(
        {
            "AUTH_MODE": "insecure",
            "SIDECAR_GRACE_SECONDS": str(grace),
            "SIDECAR_WORKERS": str(workers),
        }
    )
    load = Load(sidecar.address, [("grpc.service_config", HEALTH_CHECKED)])
    codes, elapsed = _through_sigterm(sidecar, load)
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes["OK"] >= CLIENTS * WARM_CALLS
    # The clients moved away at NOT_SERVING: no drain needed its grace period.
    settled = [line for line in sidecar.log if line.endswith("(traffic had settled)")]
    assert len(settled) == workers, sidecar.log
    assert elapsed < grace / 2, f"exit took {elapsed:.2f}s"


def test_a_drain_that_never_settles_still_exits_within_the_grace_period(
    sidecar_factory: StartSidecar,
) -> None:
    """Clients that ignore health keep sending: the drain serves them until the grace period
    is nearly over, then stops."""
    grace = 2
    sidecar = sidecar_factory({"AUTH_MODE": "insecure", "SIDECAR_GRACE_SECONDS": str(grace)})
    codes, elapsed = _through_sigterm(sidecar, Load(sidecar.address, []))
    assert codes["OK"] >= CLIENTS * WARM_CALLS
    assert sidecar.log[-1].endswith("(calls were still arriving)")
    assert elapsed < grace + 1, f"exit took {elapsed:.2f}s with a {grace}s grace period"


# -- Traffic.settle, in process ---------------------------------------------------------------


async def test_settle_returns_once_quiet() -> None:
    loop = asyncio.get_running_loop()
    assert await Traffic().settle(0.01, loop.time() + 5)


async def test_an_active_call_holds_settle_until_the_deadline() -> None:
    traffic = Traffic()
    traffic.active = 1
    loop = asyncio.get_running_loop()
    until = loop.time() + 0.2
    assert not await traffic.settle(0.01, until)
    assert loop.time() + 0.01 > until


async def test_calls_that_keep_starting_hold_settle_until_the_deadline() -> None:
    """Each call is over at once (`active` stays 0), but they keep coming."""
    traffic = Traffic()

    async def calls() -> None:
        while True:
            traffic.started += 1
            await asyncio.sleep(0.005)  # a client's pace; settle looks every 0.05 s

    caller = asyncio.ensure_future(calls())
    loop = asyncio.get_running_loop()
    try:
        assert not await traffic.settle(0.05, loop.time() + 0.3)
    finally:
        caller.cancel()
