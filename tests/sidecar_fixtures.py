"""Fixtures for every test directory (loaded by the root conftest.py). Helpers that tests import
directly live in support.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest
from support import Sidecar, StartSidecar, running, short_tmp_dir, start_sidecar


@pytest.fixture
def sidecar_factory() -> Iterator[StartSidecar]:
    """Starts real sidecar processes (`start(env, listen=..., args=...)`); stops them after."""
    started: list[Sidecar] = []

    def start(
        env: Mapping[str, str], listen: str = "127.0.0.1:0", args: Sequence[str] = ()
    ) -> Sidecar:
        sidecar = start_sidecar(env, listen, args)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        if sidecar.process.poll() is None:
            sidecar.process.kill()
        sidecar.terminate()


@pytest.fixture
def unix_listen() -> Iterator[str]:
    """A `unix:/tmp/...` listen address in a fresh short directory, removed afterwards."""
    with short_tmp_dir() as directory:
        yield f"unix:{directory}/sidecar.sock"


@pytest.fixture(scope="module")
def insecure_tcp() -> Iterator[Sidecar]:
    """An insecure sidecar on an ephemeral TCP port, shared by a module's tests."""
    with running({"AUTH_MODE": "insecure"}) as sidecar:
        yield sidecar


@pytest.fixture(scope="module")
def insecure_unix() -> Iterator[Sidecar]:
    """An insecure sidecar on a Unix socket, shared by a module's tests."""
    with (
        short_tmp_dir() as directory,
        running({"AUTH_MODE": "insecure"}, f"unix:{directory}/auth.sock") as sidecar,
    ):
        yield sidecar
