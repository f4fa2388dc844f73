"""The Python client against real sidecar processes, over TCP and a Unix socket.

Also unit tests of `authsidecar.v1.structs`, the Struct <-> dict conversion the client uses.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from hypothesis import given, settings
from hypothesis import strategies as st
from support import (
    HS_SECRET,
    MINT_SECRET,
    Sidecar,
    blackhole,
    closed_port,
    running,
    secure_env,
    sign,
    unsigned,
)

import authsidecar
from authsidecar import (
    DEFAULT_TIMEOUT,
    AsyncAuthClient,
    AuthClient,
    Decision,
    Minted,
    Reason,
)
from authsidecar import client as client_module
from authsidecar.client import _mint_request
from authsidecar.v1 import auth_pb2
from authsidecar.v1.structs import from_struct, to_struct

# -- sidecars ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["tcp", "unix"])
def target(request: pytest.FixtureRequest) -> str:
    """The insecure sidecar's address, once over TCP and once as `unix:/path`."""
    sidecar: Sidecar = request.getfixturevalue(f"insecure_{request.param}")
    return sidecar.address


@pytest.fixture(scope="module")
def secure() -> Iterator[str]:
    with running(secure_env("HS256", SIDECAR_MINT_SECRET=MINT_SECRET)) as sidecar:
        yield sidecar.address


def same(left: Any, right: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True in plain Python)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def rich_claims(now: int) -> dict[str, Any]:
    return {
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "n": 3,
        "ratio": 1.5,
        "limit": 2**53,
        "flag": False,
        "none": None,
        "list": [1, 2.5, "x", None, True, {"z": 0}],
        "org": {"id": "o1", "levels": [[1, 2], []]},
    }


# -- the public surface ------------------------------------------------------------------------


def test_reason_matches_the_proto_enum() -> None:
    assert {f"REASON_{r.name}": r.value for r in Reason} == dict(auth_pb2.Reason.items())


def test_package_exports() -> None:
    for name in authsidecar.__all__:
        assert getattr(authsidecar, name) is not None
    assert DEFAULT_TIMEOUT > 0
    decision = Decision(valid=True)
    with pytest.raises(FrozenInstanceError):
        decision.valid = False  # type: ignore[misc]


# -- validate ----------------------------------------------------------------------------------


def test_validate_returns_a_typed_decision(target: str) -> None:
    now = int(time.time())
    claims = rich_claims(now)
    with AuthClient(target) as client:
        decision = client.validate(unsigned(claims))
    assert decision.valid is True
    assert decision.user_id == "alice"
    assert decision.reason is Reason.UNSPECIFIED and decision.message == ""
    assert same(decision.claims, claims), decision.claims  # ints stay ints, floats floats
    assert decision.expires_at == datetime.fromtimestamp(now + 600, UTC)
    assert decision.expires_at is not None
    assert decision.expires_at.utcoffset() == timedelta(0)


def test_validate_refusal_is_a_decision_not_an_error(target: str) -> None:
    now = int(time.time())
    with AuthClient(target) as client:
        expired = client.validate(unsigned({"sub": "a", "exp": now - 60}))
        malformed = client.validate("")
        iat = client.validate(unsigned({"sub": "a", "iat": now + 600}))
    assert expired == Decision(valid=False, reason=Reason.EXPIRED, message="Expired token")
    assert malformed == Decision(valid=False, reason=Reason.MALFORMED, message="Invalid token")
    assert iat.reason is Reason.INVALID_CLAIM
    assert iat.message == f'Invalid "iat" claim value: {now + 600}'


def test_fractional_expiry_keeps_its_fraction(target: str) -> None:
    exp = int(time.time()) + 600.5
    with AuthClient(target) as client:
        decision = client.validate(unsigned({"sub": "a", "exp": exp}))
    assert decision.expires_at == datetime.fromtimestamp(exp, UTC)
    assert decision.expires_at is not None and decision.expires_at.microsecond == 500_000


async def test_async_validate(target: str) -> None:
    now = int(time.time())
    claims = rich_claims(now)
    async with AsyncAuthClient(target) as client:
        decision, refused = await asyncio.gather(
            client.validate(unsigned(claims)),
            client.validate(unsigned({"role": "x"})),
        )
    assert (decision.valid, decision.user_id) == (True, "alice")
    assert same(decision.claims, claims)
    assert decision.expires_at == datetime.fromtimestamp(now + 600, UTC)
    assert refused == Decision(
        valid=False, reason=Reason.INVALID_USER_ID, message="Missing or invalid 'user_id'"
    )


def test_validate_against_a_secure_sidecar(secure: str) -> None:
    now = int(time.time())
    with AuthClient(secure) as client:
        good = client.validate(sign("HS256", {"sub": "bob", "iat": now, "exp": now + 60}))
        none = client.validate(unsigned({"sub": "bob", "iat": now, "exp": now + 60}))
    assert (good.valid, good.user_id) == (True, "bob")
    assert none.reason is Reason.ALGORITHM_MISMATCH


# -- mint --------------------------------------------------------------------------------------


def _close_to(moment: datetime | None, seconds: float) -> bool:
    assert moment is not None and moment.tzinfo is not None
    return abs(moment.timestamp() - (time.time() + seconds)) < 5


def test_insecure_mint_with_claims_and_ttl(target: str) -> None:
    with AuthClient(target) as client:
        as_float = client.mint("alice", {"role": "dev", "n": 2}, ttl=90.0)
        as_delta = client.mint("alice", ttl=timedelta(minutes=5))
        forever = client.mint("alice")
        decision = client.validate(as_float.token)
    assert isinstance(as_float, Minted)
    assert _close_to(as_float.expires_at, 90)
    assert _close_to(as_delta.expires_at, 300)
    assert forever.expires_at is None
    assert (decision.valid, decision.user_id) == (True, "alice")
    assert decision.claims["role"] == "dev" and decision.claims["n"] == 2
    assert decision.expires_at == as_float.expires_at


def test_secure_mint_with_the_mint_secret(secure: str) -> None:
    with AuthClient(secure) as client:
        hour = client.mint(
            "carol", {"plan": "pro"}, ttl=timedelta(hours=1), mint_secret=MINT_SECRET
        )
        fraction = client.mint("carol", ttl=1.5, mint_secret=MINT_SECRET)
        decision = client.validate(hour.token)
    claims = jwt.decode(hour.token, HS_SECRET, algorithms=["HS256"])
    assert (claims["user_id"], claims["plan"]) == ("carol", "pro")
    assert claims["exp"] - claims["iat"] == 3600
    assert hour.expires_at == datetime.fromtimestamp(claims["exp"], UTC)
    short = jwt.decode(fraction.token, HS_SECRET, algorithms=["HS256"], leeway=5)
    assert short["exp"] - short["iat"] == 1  # the sidecar grants whole seconds
    assert (decision.valid, decision.user_id) == (True, "carol")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, grpc.StatusCode.UNAUTHENTICATED),
        ({"mint_secret": ""}, grpc.StatusCode.UNAUTHENTICATED),
        ({"mint_secret": "wrong"}, grpc.StatusCode.PERMISSION_DENIED),
        ({"mint_secret": MINT_SECRET, "ttl": -1}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"mint_secret": MINT_SECRET, "ttl": timedelta(days=2)}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"mint_secret": MINT_SECRET, "claims": {"exp": 1}}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["no secret", "empty secret", "wrong secret", "negative ttl", "ttl too long", "exp"],
)
def test_refused_mint_raises_rpc_error(
    secure: str, kwargs: dict[str, Any], code: grpc.StatusCode
) -> None:
    with AuthClient(secure) as client, pytest.raises(grpc.RpcError) as raised:
        client.mint("dave", **kwargs)
    assert raised.value.code() == code


async def test_async_mint(secure: str) -> None:
    async with AsyncAuthClient(secure) as client:
        minted = await client.mint("erin", {"k": [1, 2]}, ttl=60, mint_secret=MINT_SECRET)
        decision = await client.validate(minted.token)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.mint("   ", mint_secret=MINT_SECRET)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await client.mint("erin", mint_secret="wrong")
    assert _close_to(minted.expires_at, 60)
    assert (decision.valid, decision.user_id) == (True, "erin")
    assert same(decision.claims["k"], [1, 2])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_mint_request_ttl_conversion() -> None:
    assert _mint_request("u", None, 1.5).ttl == Duration(seconds=1, nanos=500_000_000)
    assert _mint_request("u", None, timedelta(minutes=2)).ttl == Duration(seconds=120)
    assert not _mint_request("u", None, None).HasField("ttl")
    assert not _mint_request("u", {}, None).HasField("claims")
    assert from_struct(_mint_request("u", {"a": 1}, None).claims) == {"a": 1}


# -- deadlines ---------------------------------------------------------------------------------


def _deadline_exceeded(call: Any) -> float:
    """Runs `call`, which must fail with DEADLINE_EXCEEDED; returns how long it took."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return time.monotonic() - started


def test_client_timeout_applies_to_every_call() -> None:
    with blackhole() as target, AuthClient(target, timeout=0.3) as client:
        assert 0.25 < _deadline_exceeded(lambda: client.validate("x")) < 2
        assert 0.25 < _deadline_exceeded(lambda: client.mint("x")) < 2


def test_per_call_timeout_beats_the_client_default() -> None:
    with blackhole() as target, AuthClient(target, timeout=30) as client:
        assert _deadline_exceeded(lambda: client.validate("x", timeout=0.2)) < 2
        assert _deadline_exceeded(lambda: client.mint("x", timeout=0.2)) < 2


def test_a_zero_per_call_timeout_is_zero_not_the_default() -> None:
    with blackhole() as target, AuthClient(target, timeout=30) as client:
        assert _deadline_exceeded(lambda: client.validate("x", timeout=0)) < 2


def test_a_reason_newer_than_the_client_is_kept_not_an_error() -> None:
    response = auth_pb2.ValidateResponse(reason=99, message="Some new reason")  # type: ignore[arg-type]
    decision = client_module._decision(response)
    assert decision.valid is False
    assert decision.reason == 99 and decision.reason.name == "UNKNOWN_99"
    assert decision.message == "Some new reason"


def test_default_deadline() -> None:
    """Without any timeout, a silent server costs DEFAULT_TIMEOUT, not forever."""
    with blackhole() as target, AuthClient(target) as client:
        elapsed = _deadline_exceeded(lambda: client.validate("x"))
    assert DEFAULT_TIMEOUT - 0.1 < elapsed < DEFAULT_TIMEOUT + 2


async def test_async_deadlines() -> None:
    with blackhole() as target:
        async with AsyncAuthClient(target, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as by_default:
                await client.validate("x")
            with pytest.raises(grpc.aio.AioRpcError) as per_call:
                await client.mint("x", timeout=0.1)
            elapsed = time.monotonic() - started
    assert by_default.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert per_call.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 3


def test_nothing_listening_is_unavailable_at_once() -> None:
    with AuthClient(f"127.0.0.1:{closed_port()}", timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            client.validate("x")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5  # far below the 30 s deadline


# -- closing -----------------------------------------------------------------------------------


@contextmanager
def tap(upstream: str) -> Iterator[tuple[str, threading.Event]]:
    """A TCP forwarder to `upstream` for one connection; the event is set when the client closes.

    It stands between the client and a real sidecar, to see what the client does with its
    connection.
    """
    host, _, port = upstream.rpartition(":")
    client_closed = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(10)

        def forward() -> None:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client, socket.create_connection((host, int(port)), timeout=10) as backend:
                backend.settimeout(None)
                replies = threading.Thread(target=_pipe, args=(backend, client), daemon=True)
                replies.start()
                _pipe(client, backend)  # returns once the client has closed its side
                client_closed.set()
                backend.shutdown(socket.SHUT_RDWR)
                replies.join(10)

        forwarder = threading.Thread(target=forward, daemon=True)
        forwarder.start()
        yield _address(server), client_closed
        forwarder.join(15)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


def _address(server: socket.socket) -> str:
    host, port = server.getsockname()
    return f"{host}:{port}"


def test_context_manager_closes_the_channel(insecure_tcp: Sidecar) -> None:
    with tap(insecure_tcp.address) as (address, client_closed):
        with AuthClient(address) as client:
            assert client.validate(unsigned({"sub": "a"})).valid
            assert not client_closed.is_set()
        assert client_closed.wait(10), "the connection outlived the `with` block"
    with pytest.raises(ValueError, match="closed channel"):
        client.validate("x")


async def test_async_context_manager_closes_the_channel(insecure_tcp: Sidecar) -> None:
    with tap(insecure_tcp.address) as (address, client_closed):
        async with AsyncAuthClient(address) as client:
            assert (await client.validate(unsigned({"sub": "a"}))).valid
            assert not client_closed.is_set()
        assert await asyncio.to_thread(client_closed.wait, 10)
    with pytest.raises(grpc.aio.UsageError):
        await client.validate("x")


def test_close_is_explicit_too(target: str) -> None:
    client = AuthClient(target)
    assert client.validate(unsigned({"sub": "a"})).valid
    client.close()
    with pytest.raises(ValueError, match="closed channel"):
        client.validate(unsigned({"sub": "a"}))


# -- structs -----------------------------------------------------------------------------------


def test_struct_round_trip_keeps_types() -> None:
    values = rich_claims(1_700_000_000)
    assert same(from_struct(to_struct(values)), values)


def test_struct_numbers() -> None:
    struct = to_struct({"whole": 2.0, "neg": -7, "big": 2**60, "edge": 2**53, "tiny": 1e-300})
    back = from_struct(struct)
    assert same(back["whole"], 2)  # a whole double reads back as an int
    assert same(back["neg"], -7)
    assert same(back["edge"], 2**53)
    assert same(back["big"], float(2**60))  # beyond 2**53 a double is not an exact int
    assert same(back["tiny"], 1e-300)


def test_to_struct_fills_the_given_struct() -> None:
    existing = Struct()
    assert to_struct({"a": [1]}, into=existing) is existing
    assert from_struct(existing) == {"a": [1]}
    assert from_struct(Struct()) == {}


def _normal(value: Any) -> Any:
    """What a value reads back as: whole doubles within 2**53 become ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normal(item) for item in value]
    return value


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_text, _json, max_size=6))
def test_struct_round_trip_property(values: dict[str, Any]) -> None:
    assert same(from_struct(to_struct(values)), _normal(values))
