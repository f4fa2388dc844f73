"""The example sync server, in process, against an in-process server."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from support import unsigned
from sync_server import make_handler  # clients/python/examples, on pytest's pythonpath

from authsidecar import AuthClient


@pytest.fixture
def sync_server(insecure_tcp: str) -> Iterator[str]:
    with AuthClient(insecure_tcp) as client:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(client))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_port}"
        server.shutdown()
        server.server_close()


def get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_accepted_token_reaches_the_data(sync_server: str) -> None:
    assert get(f"{sync_server}/v1/shape", unsigned({"sub": "alice"})) == (
        200,
        {"user_id": "alice", "path": "/v1/shape"},
    )


def test_a_refused_token_is_a_401_with_the_sidecars_reason(sync_server: str) -> None:
    assert get(f"{sync_server}/v1/shape", unsigned({"sub": "a", "exp": 1})) == (
        401,
        {"reason": "REASON_EXPIRED", "message": "Expired token"},
    )


def test_no_token_is_a_401(sync_server: str) -> None:
    assert get(f"{sync_server}/v1/shape") == (401, {"error": "missing_token"})
