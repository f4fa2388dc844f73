"""Fixtures for every test directory (loaded by the root conftest.py). Helpers that tests import
directly live in support.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest
from inprocess import in_thread
from support import (
    Sidecar,
    StartSidecar,
    Upstream,
    insecure_config,
    short_tmp_dir,
    start_sidecar,
    start_upstream,
)


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
def insecure_tcp() -> Iterator[str]:
    """The address of an insecure in-process server on an ephemeral TCP port, shared by a
    module's tests."""
    with in_thread(insecure_config()) as address:
        yield address


@pytest.fixture(scope="module")
def insecure_unix() -> Iterator[str]:
    """The address (`unix:/tmp/...`) of an insecure in-process server on a Unix socket, shared by
    a module's tests."""
    with (
        short_tmp_dir() as directory,
        in_thread(insecure_config(), f"unix:{directory}/auth.sock") as address,
    ):
        yield address


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A real HTTP echo that stands in for the sync server behind Envoy, shared by a module."""
    echo = start_upstream()
    try:
        yield echo
    finally:
        echo.stop()
