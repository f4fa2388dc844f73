"""`serve --workers N`: real supervisor and worker processes, real signals, real connections."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import grpc
import pytest
from support import (
    SERVING,
    STOPPED,
    Sidecar,
    StartSidecar,
    clean_env,
    serving_pids,
    unsigned,
    until,
)

from authsidecar.v1 import auth_pb2, auth_pb2_grpc

INSECURE = {"AUTH_MODE": "insecure", "SIDECAR_WORKERS": "2"}
RELOADED = re.compile(r"\[(\d+)\] reloaded \(SIGHUP\)")


def validate_on_fresh_connections(address: str, calls: int) -> None:
    """Each call on its own TCP connection, so that the kernel spreads them over the workers."""
    token = unsigned({"sub": "a"})
    for _ in range(calls):
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            response = auth_pb2_grpc.AuthServiceStub(ch).Validate(
                auth_pb2.ValidateRequest(token=token), timeout=10
            )
            assert response.valid


def serve_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "serve"],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_every_worker_serves_and_sigterm_drains_them_all(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory(INSECURE)
    calls = 40  # all on one worker by chance: 2 ** -39
    validate_on_fresh_connections(sidecar.address, calls)
    assert sidecar.terminate() == 0
    stopped = {int(m[1]): int(m[2]) for line in sidecar.log if (m := STOPPED.search(line))}
    workers = set(serving_pids(sidecar.log).values())
    assert set(stopped) == workers and len(workers) == 2, sidecar.log
    assert all(count > 0 for count in stopped.values()), stopped
    assert sum(stopped.values()) == calls
    assert sidecar.log[-1].endswith(f"auth-sidecar[{sidecar.process.pid}] stopped")


def test_the_ready_file_is_written_once_every_worker_serves(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory({**INSECURE, "SIDECAR_WORKERS": "3"})
    assert sidecar.terminate() == 0
    all_serving = next(i for i, line in enumerate(sidecar.log) if "3 workers serving" in line)
    assert sorted(serving_pids(sidecar.log[:all_serving])) == [0, 1, 2]


def test_a_worker_that_dies_is_restarted(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory(INSECURE)
    until(lambda: len(serving_pids(sidecar.log)) == 2)
    victim = serving_pids(sidecar.log)[0]
    os.kill(victim, signal.SIGKILL)
    until(lambda: serving_pids(sidecar.log)[0] != victim)
    assert any(f"worker 0 (pid {victim}) exited with -9; restarting" in ln for ln in sidecar.log)
    validate_on_fresh_connections(sidecar.address, 10)
    assert sidecar.terminate() == 0


def test_sighup_reaches_every_worker_and_not_the_supervisor(sidecar_factory: StartSidecar) -> None:
    """Each worker reloads in place (same pid); the supervisor only forwards the signal."""
    sidecar = sidecar_factory(INSECURE)
    until(lambda: len(serving_pids(sidecar.log)) == 2)
    before = set(serving_pids(sidecar.log).values())

    def reloaded() -> set[int]:
        found = (RELOADED.search(line) for line in list(sidecar.log))
        return {int(m[1]) for m in found if m}

    sidecar.send(signal.SIGHUP)
    until(lambda: reloaded() == before)
    assert set(serving_pids(sidecar.log).values()) == before
    assert sidecar.process.poll() is None
    validate_on_fresh_connections(sidecar.address, 4)
    assert sidecar.terminate() == 0


def test_a_config_error_is_reported_once_with_exit_2() -> None:
    result = serve_once({"AUTH_MODE": "secure", "AUTH_JWT_ALG": "XX1", "SIDECAR_WORKERS": "4"})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["AUTH_JWT_ALG", "AUTH_JWT_KEY"], lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_no_other_sidecar_can_join_a_supervised_port(
    sidecar_factory: StartSidecar, workers: str
) -> None:
    first = sidecar_factory(INSECURE)
    result = serve_once({**INSECURE, "SIDECAR_WORKERS": workers, "SIDECAR_LISTEN": first.address})
    assert result.returncode == 2
    assert f"SIDECAR_LISTEN: cannot listen on {first.address}" in result.stderr
    assert "Traceback" not in result.stderr
    validate_on_fresh_connections(first.address, 2)


def test_the_supervisor_refuses_a_port_in_use(sidecar_factory: StartSidecar) -> None:
    single = sidecar_factory({"AUTH_MODE": "insecure"})
    result = serve_once({**INSECURE, "SIDECAR_LISTEN": single.address})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"SIDECAR_LISTEN: cannot listen on {single.address}: another process serves there"
    ]


@pytest.mark.parametrize("first_workers", ["1", "2"])
def test_the_http_side_listener_port_is_held_too(
    sidecar_factory: StartSidecar, first_workers: str
) -> None:
    """Workers share the side listener's port as they share the gRPC one: no other process
    may join it, and a supervisor refuses it when in use."""
    http = {"SIDECAR_HTTP_LISTEN": "127.0.0.1:0"}
    first = sidecar_factory({**INSECURE, "SIDECAR_WORKERS": first_workers, **http})
    found = re.search(r" http=(\S+)", first.logged(" http="))
    assert found
    taken = found.group(1)
    result = serve_once({**INSECURE, "SIDECAR_LISTEN": "127.0.0.1:0", "SIDECAR_HTTP_LISTEN": taken})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"SIDECAR_HTTP_LISTEN: cannot listen on {taken}: another process serves there"
    ]


def test_a_unix_socket_is_served_by_one_process(
    sidecar_factory: StartSidecar, unix_listen: str
) -> None:
    sidecar: Sidecar = sidecar_factory(INSECURE, listen=unix_listen)
    validate_on_fresh_connections(sidecar.address, 2)
    assert sidecar.terminate() == 0
    note = "SIDECAR_WORKERS=2: a Unix socket is served by one process"
    assert any(note in line for line in sidecar.log)
    assert not any(SERVING.search(line) for line in sidecar.log)


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie that its new parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_drain_and_exit_when_the_supervisor_dies(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory(INSECURE)
    until(lambda: len(serving_pids(sidecar.log)) == 2)
    workers = list(serving_pids(sidecar.log).values())
    sidecar.process.kill()
    until(lambda: all(_gone(pid) for pid in workers))
    sidecar.wait()
    assert sum(bool(STOPPED.search(line)) for line in sidecar.log) == 2


def test_an_unwritable_ready_file_stops_the_workers_and_exits_2() -> None:
    env = {**INSECURE, "SIDECAR_LISTEN": "127.0.0.1:0", "SIDECAR_READY_FILE": "/nonexistent/a"}
    result = serve_once(env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[-1] == "SIDECAR_READY_FILE: cannot write /nonexistent/a: No such file or directory"
    assert sum(bool(STOPPED.search(line)) for line in lines) == 2
