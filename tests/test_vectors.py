"""The shared conformance vectors (tests/vectors/vectors.json) against live sidecars.

The Go and TypeScript clients run the same file in their own test suites; all must agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from support import running

from authsidecar import AuthClient
from authsidecar.v1.reason import Reason

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "vectors.json").read_text())


def absolute(env: dict[str, str]) -> dict[str, str]:
    """`*_FILE` paths in the vectors are relative to the repository root."""
    return {k: str(ROOT / v) if k.endswith("_FILE") else v for k, v in env.items()}


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, AuthClient]]:
    """One live sidecar per configuration, and a client for each."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                AuthClient(stack.enter_context(running(absolute(env))).address)
            )
            for name, env in VECTORS["configs"].items()
        }


def test_the_vectors_cover_every_reason_both_modes_and_all_algorithms() -> None:
    reasons = {v["expect"]["reason"] for v in VECTORS["vectors"]}
    assert len(reasons) == 9
    modes = {env["AUTH_MODE"] for env in VECTORS["configs"].values()}
    algs = {env.get("AUTH_JWT_ALG") for env in VECTORS["configs"].values()} - {None}
    assert modes == {"secure", "insecure"} and len(algs) == 9
    assert any("AUTH_JWT_NAMESPACE" in env for env in VECTORS["configs"].values())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector(vector: dict[str, Any], clients: dict[str, AuthClient]) -> None:
    decision = clients[vector["config"]].validate(vector["token"])
    got = {
        "valid": decision.valid,
        "user_id": decision.user_id,
        "reason": Reason(decision.reason).wire,
        "message": decision.message,
    }
    assert got == vector["expect"]
