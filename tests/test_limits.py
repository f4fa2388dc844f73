"""The receive limit fits every request the API can legitimately need, and little more."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from support import insecure_config

from authsidecar.v1 import auth_pb2
from sidecar.config import build_minter
from sidecar.core.errors import CallInvalidArgument
from sidecar.runtime import limits


def _largest_mint(max_token_bytes: int, item: Any) -> auth_pb2.MintRequest:
    """The Mint request with the most `item`s in a list claim whose token still fits."""
    minter = build_minter(insecure_config(SIDECAR_MAX_TOKEN_BYTES=str(max_token_bytes)))
    low, high = 0, max_token_bytes
    while low < high:  # the largest count that Mint accepts
        middle = (low + high + 1) // 2
        try:
            minter.mint("u", {"a": [item] * middle})
            low = middle
        except CallInvalidArgument:
            high = middle - 1
    request = auth_pb2.MintRequest(user_id="u")
    request.claims.update({"a": [item] * low})
    return request


@pytest.mark.parametrize("max_token_bytes", [64, 8192, 65536])
@pytest.mark.parametrize("item", [1, 1.5, None, [], "", {"k": 1}], ids=repr)
def test_any_mint_whose_token_fits_is_under_the_limit(max_token_bytes: int, item: object) -> None:
    request = _largest_mint(max_token_bytes, item)
    assert request.ByteSize() <= limits.max_message_bytes(max_token_bytes)


def test_a_check_with_envoys_largest_headers_is_under_the_limit() -> None:
    path = "/" + "p" * (limits.ENVOY_HEADERS_BYTES // 2)
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.path = path
    http.headers[":path"] = path
    http.headers["x-rest"] = "h" * (limits.ENVOY_HEADERS_BYTES // 2 - 100)
    http.header_map.headers.append(base_pb2.HeaderValue(key="x-raw", value="r" * 100))
    assert request.ByteSize() <= limits.max_message_bytes(8192)


def test_the_limit_is_far_below_a_mebibyte_by_default() -> None:
    """What the limit is for: 500 concurrent 1 MB calls must be refused, not buffered."""
    assert limits.max_message_bytes(8192) <= 256 * 1024
