"""examples/gatekeeper, in-process, against a live secure sidecar with the shape claim on."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from gatekeeper import TTL_SECONDS, make_handler  # examples/gatekeeper, on pytest's pythonpath
from support import MINT_SECRET, running, secure_env

from authsidecar import AuthClient
from authsidecar.v1 import auth_pb2, auth_pb2_grpc


@pytest.fixture(scope="module")
def sidecar() -> Iterator[str]:
    env = secure_env("HS256", SIDECAR_MINT_SECRET=MINT_SECRET, SIDECAR_SHAPE_CLAIM="shape")
    with running(env) as started:
        yield started.address


@pytest.fixture(scope="module")
def gatekeeper(sidecar: str) -> Iterator[str]:
    with AuthClient(sidecar) as auth:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(auth, MINT_SECRET))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_port}"
        server.shutdown()
        server.server_close()


def post(url: str, user: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST")
    if user is not None:
        request.add_header("x-demo-user", user)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def validate(sidecar: str, token: str, params: list[str]) -> auth_pb2.ValidateResponse:
    shape = auth_pb2.ShapeRequest(
        table="items", where="owner = $1", columns=["title", "id"], params=params
    )
    with grpc.insecure_channel(sidecar) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        return stub.Validate(auth_pb2.ValidateRequest(token=token, shape=shape))


def test_the_gatekeeper_mints_a_token_for_the_users_own_shape(
    sidecar: str, gatekeeper: str
) -> None:
    status, body = post(f"{gatekeeper}/gatekeeper/items", "alice")
    assert status == 200
    assert body["params"] == {
        "table": "items",
        "where": "owner = $1",
        "columns": ["id", "title"],
        "params": ["alice"],
    }
    mine = validate(sidecar, body["token"], ["alice"])
    assert (mine.valid, mine.user_id) == (True, "alice")
    assert mine.expires_at.seconds - mine.claims.fields["iat"].number_value == TTL_SECONDS
    theirs = validate(sidecar, body["token"], ["bob"])
    assert (theirs.valid, theirs.reason) == (False, auth_pb2.REASON_SHAPE_MISMATCH)


def test_the_gatekeeper_needs_a_user_and_a_known_shape(gatekeeper: str) -> None:
    assert post(f"{gatekeeper}/gatekeeper/items", None) == (401, {"error": "sign in first"})
    assert post(f"{gatekeeper}/gatekeeper/secrets", "alice") == (404, {"error": "no such shape"})
