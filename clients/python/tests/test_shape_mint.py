"""`mint(..., shape=...)`: a gatekeeper token, checked by a live sidecar with the shape claim."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from support import running

from authsidecar import SHAPE_CLAIM, AsyncAuthClient, AuthClient
from authsidecar.client import _mint_request
from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from authsidecar.v1.structs import from_struct

SHAPE = {"table": "items", "where": "owner = $1", "columns": ["id", "title"], "params": ["alice"]}


@pytest.fixture(scope="module")
def shaped() -> Iterator[str]:
    with running({"AUTH_MODE": "insecure", "SIDECAR_SHAPE_CLAIM": "shape"}) as sidecar:
        yield sidecar.address


def validate_shape(address: str, token: str, **shape: Any) -> auth_pb2.ValidateResponse:
    with grpc.insecure_channel(address) as channel:
        request = auth_pb2.ValidateRequest(token=token, shape=auth_pb2.ShapeRequest(**shape))
        return auth_pb2_grpc.AuthServiceStub(channel).Validate(request)


def test_the_shape_is_written_as_the_shape_claim_next_to_other_claims() -> None:
    request = _mint_request("alice", {"role": "reader"}, None, SHAPE)
    assert from_struct(request.claims) == {"role": "reader", SHAPE_CLAIM: SHAPE}
    assert SHAPE_CLAIM == "shape"


def test_a_minted_shape_token_syncs_its_shape_only(shaped: str) -> None:
    with AuthClient(shaped) as client:
        token = client.mint("alice", shape=SHAPE).token
    fields = {"table": "items", "where": "owner = $1", "columns": ["title", "id"]}
    ok = validate_shape(shaped, token, **fields, params=["alice"])
    other = validate_shape(shaped, token, **fields, params=["bob"])
    assert (ok.valid, ok.user_id) == (True, "alice")
    assert (other.valid, other.reason) == (False, auth_pb2.REASON_SHAPE_MISMATCH)


async def test_async_mint_takes_the_shape_too(shaped: str) -> None:
    async with AsyncAuthClient(shaped) as client:
        token = (await client.mint("bob", shape={"table": "items"})).token
    assert validate_shape(shaped, token, table="items").valid
    assert not validate_shape(shaped, token, table="items", where="true").valid
