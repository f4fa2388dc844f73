"""Shared fixtures. Helpers that tests import directly live in support.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest
from support import Sidecar, start_sidecar

StartSidecar = Callable[..., Sidecar]


@pytest.fixture
def sidecar_factory() -> Iterator[StartSidecar]:
    """Starts real sidecar processes (`start(env, listen=...)`) and stops them after the test."""
    started: list[Sidecar] = []

    def start(env: Mapping[str, str], listen: str = "127.0.0.1:0") -> Sidecar:
        sidecar = start_sidecar(env, listen)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        if sidecar.process.poll() is None:
            sidecar.process.kill()
        sidecar.terminate()
