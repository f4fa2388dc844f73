"""The example sync server, in-process, against a live sidecar."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from support import Sidecar, closed_port, unsigned
from sync_server import make_handler  # clients/python/examples, on pytest's pythonpath

from authsidecar import AuthClient


@contextmanager
def serving(target: str) -> Iterator[str]:
    """The example's handler on a free port, asking the sidecar at `target`; yields its URL."""
    with AuthClient(target, retry_attempts=1) as client:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(client))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_port}"
        server.shutdown()
        server.server_close()


@pytest.fixture
def sync_server(insecure_tcp: Sidecar) -> Iterator[str]:
    with serving(insecure_tcp.address) as url:
        yield url


@pytest.fixture
def sync_server_without_sidecar() -> Iterator[str]:
    with serving(f"127.0.0.1:{closed_port()}") as url:
        yield url


def get(url: str, authorization: str | None = None) -> tuple[int, dict[str, Any], str | None]:
    """Status, JSON body and WWW-Authenticate of a GET."""
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                json.loads(response.read()),
                response.headers["WWW-Authenticate"],
            )
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers["WWW-Authenticate"]


def test_an_accepted_token_reaches_the_data(sync_server: str) -> None:
    assert get(f"{sync_server}/v1/shape", f"Bearer {unsigned({'sub': 'alice'})}") == (
        200,
        {"user_id": "alice", "path": "/v1/shape"},
        None,
    )


def test_a_refused_token_is_a_401_with_the_sidecars_reason(sync_server: str) -> None:
    assert get(f"{sync_server}/v1/shape", f"Bearer {unsigned({'sub': 'a', 'exp': 1})}") == (
        401,
        {"error": "invalid_token", "message": "Expired token", "reason": "REASON_EXPIRED"},
        'Bearer realm="auth-sidecar", error="invalid_token"',
    )


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6c2VjcmV0", "Bearer "])
def test_no_token_is_answered_as_the_envoy_check_does(
    sync_server: str, authorization: str | None
) -> None:
    assert get(f"{sync_server}/v1/shape", authorization) == (
        401,
        {"error": "missing_token", "message": "Missing bearer token"},
        'Bearer realm="auth-sidecar"',
    )


def test_no_decision_is_a_503(sync_server_without_sidecar: str) -> None:
    assert get(sync_server_without_sidecar, f"Bearer {unsigned({'sub': 'alice'})}") == (
        503,
        {"error": "auth_unavailable", "message": "Auth sidecar unavailable"},
        None,
    )
