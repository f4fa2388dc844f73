"""Server tests: the real grpc.aio server, real gRPC over TCP and Unix sockets.

Nothing here is mocked: tokens are signed by PyJWT with real keys and every call crosses a real
socket. Servers that tests only call run in process (tests/inprocess.py), shared per module;
what only a process has (signals and draining, binding, logging, the ready file) runs real
`auth-sidecar serve` processes, one per test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from inprocess import in_thread, serving
from support import (
    HS_SECRET,
    MINT_SECRET,
    StartSidecar,
    b64url,
    clean_env,
    insecure_config,
    key_pair,
    secure_config,
    secure_env,
    short_tmp_dir,
    sign,
    unsigned,
    verify_material,
)

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar.core.errors import Reason as CoreReason
from sidecar.runtime import limits

AUTH_SERVICE = "authsidecar.v1.AuthService"
SECURE_ALGS = ("HS256", "RS256", "ES256")
BEARER = (("authorization", f"Bearer {MINT_SECRET}"),)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
R = auth_pb2  # the proto's top-level Reason values: R.REASON_EXPIRED, ...
# A record of the sidecar's own logging: "2026-01-01 12:00:00,000 INFO name message".
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ")


class Secure(NamedTuple):
    alg: str
    address: str


# -- shared in-process servers (their addresses) -----------------------------------------------


@pytest.fixture(scope="module", params=["tcp", "unix"])
def insecure(request: pytest.FixtureRequest) -> str:
    """The insecure server, once over TCP and once over a Unix socket."""
    address: str = request.getfixturevalue(f"insecure_{request.param}")
    return address


@pytest.fixture(scope="module", params=SECURE_ALGS)
def secure(request: pytest.FixtureRequest) -> Iterator[Secure]:
    """A secure server per algorithm family, with Mint enabled."""
    alg: str = request.param
    with in_thread(secure_config(alg, SIDECAR_MINT_SECRET=MINT_SECRET)) as address:
        yield Secure(alg, address)


@pytest.fixture(scope="module")
def no_mint_secret() -> Iterator[str]:
    with in_thread(secure_config("HS256")) as address:
        yield address


@pytest.fixture(scope="module")
def scoped() -> Iterator[str]:
    """Secure HS256 with a namespace, an issuer and an audience."""
    config = secure_config(
        "HS256",
        AUTH_JWT_NAMESPACE="electric",
        AUTH_JWT_ISS="https://issuer.example",
        AUTH_JWT_AUD="sync",
        SIDECAR_MINT_SECRET=MINT_SECRET,
    )
    with in_thread(config) as address:
        yield address


# -- helpers -----------------------------------------------------------------------------------


@contextmanager
def auth_stub(address: str) -> Iterator[auth_pb2_grpc.AuthServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield auth_pb2_grpc.AuthServiceStub(channel)


@contextmanager
def health_stub(address: str) -> Iterator[Any]:
    with grpc.insecure_channel(address) as channel:
        yield health_pb2_grpc.HealthStub(channel)


def validate(stub: auth_pb2_grpc.AuthServiceStub, token: str) -> auth_pb2.ValidateResponse:
    return stub.Validate(auth_pb2.ValidateRequest(token=token), timeout=10)


def mint_error(
    stub: auth_pb2_grpc.AuthServiceStub,
    request: auth_pb2.MintRequest,
    metadata: tuple[tuple[str, str], ...] = BEARER,
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Mint(request, metadata=metadata, timeout=10)
    return raised.value


def mint_request(
    user_id: str = "alice", claims: dict[str, Any] | None = None, ttl: int | None = None
) -> auth_pb2.MintRequest:
    request = auth_pb2.MintRequest(user_id=user_id)
    if claims is not None:
        request.claims.update(claims)
    if ttl is not None:
        request.ttl.seconds = ttl
    return request


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return _b64json(header), _b64json(payload), signature


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def raw_token(payload: bytes, header: bytes = b'{"alg":"none","typ":"JWT"}') -> str:
    """An unsigned token from raw JSON bytes, for payloads json.dumps cannot write."""
    return f"{b64url(header)}.{b64url(payload)}."


def hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    """HS256 by hand, with any bytes as the secret (PyJWT refuses PEM keys as HMAC secrets)."""
    signing_input = (
        f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
        f"{b64url(json.dumps(claims).encode())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def foreign_key(alg: str) -> str:
    """A key of the right kind for `alg` that the sidecar does not know."""
    if alg.startswith("HS"):
        return "t" * 64
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def assert_refused(response: auth_pb2.ValidateResponse, reason: int, message: str) -> None:
    """A refusal names its reason and Electric's message, and returns nothing of the token."""
    assert (response.valid, response.reason, response.message) == (False, reason, message)
    assert response.user_id == ""
    assert not response.HasField("claims")
    assert not response.HasField("expires_at")


# -- Validate over the wire --------------------------------------------------------------------


def test_insecure_valid_decision_carries_claims_user_and_expiry(insecure: str) -> None:
    now = int(time.time())
    claims = {
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "role": "admin",
        "n": 3,
        "tags": ["a", 1.5, True, None],
        "org": {"id": "o1", "deep": {"x": -2}},
    }
    with auth_stub(insecure) as stub:
        response = validate(stub, unsigned(claims))
    assert response.valid
    assert response.user_id == "alice"
    assert (response.reason, response.message) == (R.REASON_UNSPECIFIED, "")
    assert json_format.MessageToDict(response.claims) == claims
    assert (response.expires_at.seconds, response.expires_at.nanos) == (now + 600, 0)


def test_insecure_fractional_exp_and_user_id_fallback(insecure: str) -> None:
    exp = int(time.time()) + 600 + 0.25
    with auth_stub(insecure) as stub:
        response = validate(stub, unsigned({"user_id": "bob", "exp": exp}))
        no_exp = validate(stub, unsigned({"sub": "carol"}))
    assert (response.valid, response.user_id) == (True, "bob")
    assert (response.expires_at.seconds, response.expires_at.nanos) == (int(exp), 250_000_000)
    assert (no_exp.valid, no_exp.user_id) == (True, "carol")
    assert not no_exp.HasField("expires_at")


INSECURE_REFUSALS: list[tuple[str, Callable[[int], str], int, Callable[[int], str]]] = [
    ("garbage", lambda now: "not-a-token", R.REASON_MALFORMED, lambda now: "Invalid token"),
    (
        "expired",
        lambda now: unsigned({"sub": "a", "exp": now - 60}),
        R.REASON_EXPIRED,
        lambda now: "Expired token",
    ),
    (
        "not-yet-valid",
        lambda now: unsigned({"sub": "a", "nbf": now + 600}),
        R.REASON_NOT_YET_VALID,
        lambda now: "Token is not yet valid",
    ),
    (
        "future-iat",
        lambda now: unsigned({"sub": "a", "iat": now + 600}),
        R.REASON_INVALID_CLAIM,
        lambda now: f'Invalid "iat" claim value: {now + 600}',
    ),
    (
        "bool-exp",
        lambda now: unsigned({"sub": "a", "exp": True}),
        R.REASON_INVALID_CLAIM,
        lambda now: 'Invalid "exp" claim value: true',
    ),
    (
        "no-user",
        lambda now: unsigned({"role": "admin"}),
        R.REASON_INVALID_USER_ID,
        lambda now: "Missing or invalid 'user_id'",
    ),
    (
        "blank-user",
        lambda now: unsigned({"sub": "  "}),
        R.REASON_INVALID_USER_ID,
        lambda now: "Missing or invalid 'user_id'",
    ),
]


@pytest.mark.parametrize(
    ("token", "reason", "message"),
    [case[1:] for case in INSECURE_REFUSALS],
    ids=[case[0] for case in INSECURE_REFUSALS],
)
def test_insecure_refusals_over_the_wire(
    insecure: str,
    token: Callable[[int], str],
    reason: int,
    message: Callable[[int], str],
) -> None:
    now = int(time.time())
    with auth_stub(insecure) as stub:
        assert_refused(validate(stub, token(now)), reason, message(now))


def test_secure_valid_decision(secure: Secure) -> None:
    now = int(time.time())
    claims = {"sub": "bob", "iat": now, "exp": now + 300, "scope": ["read", "write"]}
    with auth_stub(secure.address) as stub:
        response = validate(stub, sign(secure.alg, claims))
    assert (response.valid, response.user_id, response.reason) == (True, "bob", 0)
    assert json_format.MessageToDict(response.claims) == claims
    assert response.expires_at.seconds == now + 300


def _secure_refusals(alg: str, now: int) -> list[tuple[str, str, int, str]]:
    good = {"sub": "bob", "iat": now, "exp": now + 300}
    header, _, signature = sign(alg, good).split(".")
    forged_payload = b64url(json.dumps({**good, "sub": "mallory"}).encode())
    if alg.startswith("HS"):
        confused = sign("RS256", good)
    else:  # HS256 keyed with the public key: the classic RS/HS confusion
        confused = hs256_with(verify_material(alg).encode(), good)
    return [
        ("payload swapped", f"{header}.{forged_payload}.{signature}", R.REASON_BAD_SIGNATURE,
         "Invalid token signature"),
        ("foreign key", jwt.encode(good, foreign_key(alg), algorithm=alg),
         R.REASON_BAD_SIGNATURE, "Invalid token signature"),
        ("alg none", unsigned(good), R.REASON_ALGORITHM_MISMATCH, "Signing algorithm mismatch"),
        ("alg confusion", confused, R.REASON_ALGORITHM_MISMATCH, "Signing algorithm mismatch"),
        ("no iat", sign(alg, {"sub": "bob", "exp": now + 300}), R.REASON_MISSING_CLAIM,
         'Missing required "iat" claim'),
        ("no exp", sign(alg, {"sub": "bob", "iat": now}), R.REASON_MISSING_CLAIM,
         'Missing required "exp" claim'),
        ("expired", sign(alg, {**good, "exp": now - 60}), R.REASON_EXPIRED, "Expired token"),
        ("no user", sign(alg, {"iat": now, "exp": now + 300}), R.REASON_INVALID_USER_ID,
         "Missing or invalid 'user_id'"),
    ]  # fmt: skip


def test_secure_refusals_over_the_wire(secure: Secure) -> None:
    now = int(time.time())
    with auth_stub(secure.address) as stub:
        for name, token, reason, message in _secure_refusals(secure.alg, now):
            response = validate(stub, token)
            assert (name, response.reason, response.message) == (name, reason, message)
            assert_refused(response, reason, message)


def test_issuer_audience_and_namespace(scoped: str) -> None:
    now = int(time.time())
    base = {"iat": now, "exp": now + 300, "electric": {"user_id": "dana"}}
    good = {**base, "iss": "https://issuer.example", "aud": "sync"}
    with auth_stub(scoped) as stub:
        valid = validate(stub, sign("HS256", good))
        in_list = validate(stub, sign("HS256", {**good, "aud": ["other", "sync"]}))
        top_level = validate(stub, sign("HS256", {**good, "electric": {}, "sub": "dana"}))
        evil_iss = validate(stub, sign("HS256", {**good, "iss": "evil"}))
        other_aud = validate(stub, sign("HS256", {**good, "aud": ["other"]}))
        no_aud = validate(stub, sign("HS256", {**base, "iss": "https://issuer.example"}))
    assert (valid.valid, valid.user_id) == (True, "dana")
    assert (in_list.valid, in_list.user_id) == (True, "dana")
    assert_refused(top_level, R.REASON_INVALID_USER_ID, "Missing or invalid 'user_id'")
    assert_refused(evil_iss, R.REASON_INVALID_CLAIM, 'Invalid "iss" claim value: "evil"')
    assert_refused(other_aud, R.REASON_INVALID_CLAIM, 'Invalid "aud" claim value: ["other"]')
    assert_refused(no_aud, R.REASON_MISSING_CLAIM, 'Missing required "aud" claim')


# -- a decision is always an OK RPC ------------------------------------------------------------


def _deep(depth: int) -> bytes:
    return b'{"sub":"a","x":' + b"[" * depth + b"]" * depth + b"}"


ODD_TOKENS: dict[str, str] = {
    "empty": "",
    "space": " ",
    "dots": "...",
    "one dot": ".",
    "two segments of nothing": "a.b",
    "four segments": "a.b.c.d",
    "100 kB": "a" * 100_000,
    "100 kB of dots": "x." * 50_000,
    "just over the limit": unsigned({"sub": "a", "pad": "x" * 8200}),
    # Over the gRPC message limit is RESOURCE_EXHAUSTED (below); under it, a decision.
    "just under the message limit": "eyJ" * ((limits.max_message_bytes(8192) - 16) // 3),
    "non-ascii": "é.ü.ß",
    "nul": "\x00.\x00.\x00",
    "bearer prefix": "Bearer " + unsigned({"sub": "a"}),
    "padded base64": unsigned({"sub": "a"}).replace(".", "==.", 1),
    "header not json": f"{b64url(b'nope')}.{b64url(b'{}')}.",
    "header array": unsigned({"sub": "a"}, header=[1, 2]),
    "payload array": unsigned([1, 2]),
    "payload string": unsigned("sub"),
    "payload invalid utf-8": raw_token(b'{"sub":"\xff\xfe"}'),
    "NaN": raw_token(b'{"sub":"a","exp":NaN}'),
    "Infinity": raw_token(b'{"sub":"a","exp":1e400}'),
    "int beyond double": raw_token(b'{"sub":"a","exp":1' + b"0" * 400 + b"}"),
    "deep": raw_token(_deep(40)),
    "very deep": raw_token(_deep(3000)),
    "lone surrogate in a claim": raw_token(b'{"sub":"a","x":"\\ud800"}'),
    "lone surrogate as user": raw_token(b'{"sub":"\\udfff"}'),
    "lone surrogate in iat": raw_token(b'{"sub":"a","iat":"\\ud800"}'),
    "lone surrogate in a key": raw_token(b'{"sub":"a","\\ud800":1}'),
}


@pytest.mark.parametrize("token", ODD_TOKENS.values(), ids=ODD_TOKENS.keys())
def test_odd_tokens_get_a_refusal_not_an_error(insecure_tcp: str, token: str) -> None:
    """Everything here is malformed; none of it may fail the RPC (no UNKNOWN, no INTERNAL)."""
    with auth_stub(insecure_tcp) as stub:
        assert_refused(validate(stub, token), R.REASON_MALFORMED, "Invalid token")


def test_odd_tokens_in_secure_mode(secure: Secure) -> None:
    now = int(time.time())
    with auth_stub(secure.address) as stub:
        for name, token in ODD_TOKENS.items():
            response = validate(stub, token)
            assert (name, response.valid) == (name, False)
            assert response.reason in (R.REASON_MALFORMED, R.REASON_ALGORITHM_MISMATCH), name
        # Signed with the real key, so that the odd claims get past the signature.
        for claims in (
            {"sub": "\ud800", "iat": now, "exp": now + 60},
            {"sub": "a", "x": ["\udfff"], "iat": now, "exp": now + 60},
            {"sub": "a", "iat": "\ud800", "exp": now + 60},
        ):
            response = validate(stub, sign(secure.alg, claims))
            assert_refused(response, R.REASON_MALFORMED, "Invalid token")


def test_message_over_the_grpc_limit_is_resource_exhausted(insecure_tcp: str) -> None:
    """The limit is what the API needs (sidecar.limits), not 1 MiB: a flood cannot buffer more."""
    limit = limits.max_message_bytes(8192)
    with auth_stub(insecure_tcp) as stub:
        # Under the limit, an over-long token is a decision; over it, gRPC refuses the message.
        assert_refused(validate(stub, "a" * (limit - 16)), R.REASON_MALFORMED, "Invalid token")
        with pytest.raises(grpc.RpcError) as raised:
            validate(stub, "a" * limit)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert validate(stub, unsigned({"sub": "a"})).valid  # and the server carries on


def test_undecodable_request_fails_that_call_only(insecure_tcp: str) -> None:
    """Bytes that are no ValidateRequest (a string field with bad UTF-8, a corrupt wire format)."""
    with grpc.insecure_channel(insecure_tcp) as channel:
        raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{AUTH_SERVICE}/Validate"
        )
        for payload in (b"\x0a\x02\xff\xfe", b"\xff\xff\xff"):
            with pytest.raises(grpc.RpcError) as raised:
                raw(payload, timeout=10)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details() == (
                "the request is not a valid authsidecar.v1.ValidateRequest"
            )
        response = auth_pb2_grpc.AuthServiceStub(channel).Validate(
            auth_pb2.ValidateRequest(token=unsigned({"sub": "a"})), timeout=10
        )
    assert response.valid


def test_core_reasons_match_the_proto() -> None:
    """The service passes reasons by value; names and values must agree one to one."""
    assert {r.wire: r.value for r in CoreReason} == dict(auth_pb2.Reason.items())


# -- Mint over the wire ------------------------------------------------------------------------


def test_insecure_mint_is_open_and_unsigned(insecure: str) -> None:
    with auth_stub(insecure) as stub:
        response = stub.Mint(mint_request("alice", {"role": "dev", "n": 2}), timeout=10)
        decision = validate(stub, response.token)
    header, payload, signature = segments(response.token)
    assert header == {"alg": "none", "typ": "JWT"}
    assert signature == "" and response.token.endswith(".")
    assert payload == {"role": "dev", "n": 2, "user_id": "alice"}
    assert not response.HasField("expires_at")
    assert (decision.valid, decision.user_id) == (True, "alice")
    assert not decision.HasField("expires_at")


def test_insecure_mint_with_ttl_writes_exp(insecure: str) -> None:
    before = int(time.time())
    with auth_stub(insecure) as stub:
        # Any credential, or a wrong one, is irrelevant in insecure mode.
        response = stub.Mint(
            mint_request("bob", ttl=60), metadata=(("authorization", "Bearer nope"),), timeout=10
        )
        decision = validate(stub, response.token)
    _, payload, _ = segments(response.token)
    assert before + 60 <= payload["exp"] <= int(time.time()) + 60
    assert response.expires_at.seconds == payload["exp"]
    assert (decision.valid, decision.user_id) == (True, "bob")
    assert decision.expires_at.seconds == payload["exp"]


@pytest.mark.parametrize("claims", [{"user_id": "root"}, {"sub": "root"}])
def test_insecure_mint_claims_cannot_set_the_user(insecure: str, claims: dict[str, str]) -> None:
    with auth_stub(insecure) as stub:
        error = mint_error(stub, mint_request("alice", claims), metadata=())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_secure_mint_without_a_secret_is_failed_precondition(no_mint_secret: str) -> None:
    with auth_stub(no_mint_secret) as stub:
        for metadata in ((), BEARER):
            error = mint_error(stub, mint_request(), metadata)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "SIDECAR_MINT_SECRET" in (error.details() or "")
            assert "authorization: Bearer" in (error.details() or "")
        # Validate is unaffected.
        now = int(time.time())
        assert validate(stub, sign("HS256", {"sub": "a", "iat": now, "exp": now + 60})).valid


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", ""),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED),
        ((("authorization", f"Bearer {MINT_SECRET}x"),), grpc.StatusCode.PERMISSION_DENIED),
        ((("authorization", f"Bearer {MINT_SECRET[:-1]}"),), grpc.StatusCode.PERMISSION_DENIED),
        ((("authorization", f"Basic {MINT_SECRET}"),), grpc.StatusCode.PERMISSION_DENIED),
        ((("authorization", MINT_SECRET),), grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=["none", "empty", "wrong", "longer", "shorter", "basic", "no scheme"],
)
def test_secure_mint_refuses_bad_credentials(
    secure: Secure, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    with auth_stub(secure.address) as stub:
        error = mint_error(stub, mint_request(), metadata)
    assert error.code() == code
    assert MINT_SECRET not in (error.details() or "")


def test_secure_mint_signs_tokens_that_pyjwt_and_validate_accept(secure: Secure) -> None:
    before = int(time.time())
    with auth_stub(secure.address) as stub:
        default = stub.Mint(mint_request("erin", {"plan": "pro"}), metadata=BEARER, timeout=10)
        short = stub.Mint(mint_request("erin", ttl=120), metadata=BEARER, timeout=10)
        decisions = [validate(stub, default.token), validate(stub, short.token)]
    after = int(time.time())
    header = jwt.get_unverified_header(default.token)
    # The kid is the key's RFC 7638 thumbprint (test_minter checks its value).
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", header.pop("kid"))
    assert header == {"alg": secure.alg, "typ": "JWT"}
    claims = jwt.decode(
        default.token,
        verify_material(secure.alg),
        algorithms=[secure.alg],
        options={"require": ["iat", "nbf", "exp"]},
    )
    assert claims["user_id"] == "erin" and claims["plan"] == "pro"
    assert before <= claims["iat"] == claims["nbf"] <= after
    assert claims["exp"] - claims["iat"] == 15 * 60  # Electric's default
    assert default.expires_at.seconds == claims["exp"]
    short_claims = jwt.decode(short.token, verify_material(secure.alg), algorithms=[secure.alg])
    assert short_claims["exp"] - short_claims["iat"] == 120
    for decision, response in zip(decisions, (default, short), strict=True):
        assert (decision.valid, decision.user_id) == (True, "erin")
        assert decision.expires_at == response.expires_at


def test_mint_with_namespace_issuer_and_audience(scoped: str) -> None:
    with auth_stub(scoped) as stub:
        response = stub.Mint(
            mint_request("dana", {"electric": {"role": "admin"}}), metadata=BEARER, timeout=10
        )
        decision = validate(stub, response.token)
        error = mint_error(stub, mint_request("dana", {"electric": {"user_id": "root"}}))
    claims = jwt.decode(
        response.token,
        HS_SECRET,
        algorithms=["HS256"],
        issuer="https://issuer.example",
        audience="sync",
    )
    assert claims["electric"] == {"role": "admin", "user_id": "dana"}
    assert "user_id" not in claims
    assert (decision.valid, decision.user_id) == (True, "dana")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def _huge_ttl() -> auth_pb2.MintRequest:
    request = mint_request()
    request.ttl.seconds = 2**62
    return request


def _fractional_ttl(nanos: int) -> auth_pb2.MintRequest:
    request = mint_request()
    request.ttl.nanos = nanos
    return request


BAD_MINTS: dict[str, auth_pb2.MintRequest] = {
    "empty user": mint_request(""),
    "blank user": mint_request(" \t "),
    "negative ttl": mint_request(ttl=-5),
    "zero ttl": mint_request(ttl=0),
    "under a second": _fractional_ttl(500_000_000),
    "ttl above the ceiling": mint_request(ttl=86_401),
    "ttl beyond any date": _huge_ttl(),
    **{f"reserved {name}": mint_request(claims={name: 1}) for name in ("iat", "nbf", "exp")},
    "reserved iss": mint_request(claims={"iss": "me"}),
    "reserved aud": mint_request(claims={"aud": "you"}),
    "reserved sub": mint_request(claims={"sub": "root"}),
    "reserved user_id": mint_request(claims={"user_id": "root"}),
    "NaN claim": mint_request(claims={"x": float("nan")}),
    "infinite claim": mint_request(claims={"x": [float("inf")]}),
}


@pytest.mark.parametrize("request_", BAD_MINTS.values(), ids=BAD_MINTS.keys())
def test_secure_mint_bad_requests_are_invalid_argument(
    secure: Secure, request_: auth_pb2.MintRequest
) -> None:
    with auth_stub(secure.address) as stub:
        error = mint_error(stub, request_)
        # The credential is checked first: a caller without it learns nothing about its request.
        unauthenticated = mint_error(stub, request_, metadata=())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details()
    assert unauthenticated.code() == grpc.StatusCode.UNAUTHENTICATED


def test_insecure_mint_bad_ttl_is_invalid_argument(insecure_tcp: str) -> None:
    with auth_stub(insecure_tcp) as stub:
        for request in (mint_request(ttl=-1), mint_request(ttl=86_401), _huge_ttl()):
            assert mint_error(stub, request, ()).code() == grpc.StatusCode.INVALID_ARGUMENT


# -- health and reflection ---------------------------------------------------------------------


def test_health_check(insecure: str) -> None:
    with health_stub(insecure) as health:
        for service in ("", AUTH_SERVICE):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == SERVING
        for unknown in ("authsidecar.v1.Nope", "grpc.health.v1.Health"):
            with pytest.raises(grpc.RpcError) as raised:
                health.Check(health_pb2.HealthCheckRequest(service=unknown), timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(insecure: str) -> None:
    with grpc.insecure_channel(insecure) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        pool = DescriptorPool(database)
        service = pool.FindServiceByName(AUTH_SERVICE)
        response = pool.FindMessageTypeByName("authsidecar.v1.ValidateResponse")
    assert {AUTH_SERVICE, "grpc.health.v1.Health"} <= services
    assert "grpc.reflection.v1alpha.ServerReflection" in services
    methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
    assert methods == {
        "Validate": ("authsidecar.v1.ValidateRequest", "authsidecar.v1.ValidateResponse"),
        "Mint": ("authsidecar.v1.MintRequest", "authsidecar.v1.MintResponse"),
        "Revoke": ("authsidecar.v1.RevokeRequest", "authsidecar.v1.RevokeResponse"),
    }
    fields = {f.name: f.number for f in response.fields}
    assert fields == {
        "valid": 1,
        "user_id": 2,
        "claims": 3,
        "reason": 4,
        "message": 5,
        "expires_at": 6,
    }


# -- concurrency -------------------------------------------------------------------------------


async def _concurrent_decisions(address: str, tokens: Sequence[tuple[str, str, int]]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        responses = await asyncio.gather(
            *(stub.Validate(auth_pb2.ValidateRequest(token=t), timeout=30) for t, _, _ in tokens)
        )
    for response, (_, user, reason) in zip(responses, tokens, strict=True):
        assert (response.user_id, response.reason) == (user, reason)
        assert response.valid is (reason == R.REASON_UNSPECIFIED)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_concurrent_validate_calls_insecure(transport: str) -> None:
    """The server runs in this test's own event loop (inprocess.serving)."""
    now = int(time.time())
    tokens = [
        (unsigned({"sub": f"user-{i}", "exp": now + 60}), f"user-{i}", R.REASON_UNSPECIFIED)
        if i % 4
        else (unsigned({"sub": f"user-{i}", "exp": now - 60}), "", R.REASON_EXPIRED)
        for i in range(200)
    ]
    with short_tmp_dir() as directory:
        listen = "127.0.0.1:0" if transport == "tcp" else f"unix:{directory}/auth.sock"
        async with serving(insecure_config(), listen) as address:
            await _concurrent_decisions(address, tokens)


@pytest.mark.parametrize("alg", SECURE_ALGS)
async def test_concurrent_validate_calls_secure(alg: str) -> None:
    now = int(time.time())
    valid = [sign(alg, {"sub": f"u{i}", "iat": now, "exp": now + 60}) for i in range(150)]
    tokens = [(token, f"u{i}", R.REASON_UNSPECIFIED) for i, token in enumerate(valid)]
    tokens += [(unsigned({"sub": "x"}), "", R.REASON_ALGORITHM_MISMATCH)] * 50
    async with serving(secure_config(alg)) as address:
        await _concurrent_decisions(address, tokens)


# -- shutdown ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_right_after_start_drains_and_exits_zero(
    sidecar_factory: StartSidecar, signum: int
) -> None:
    """The signal handlers are in place by the time the start-up line is logged."""
    sidecar = sidecar_factory({"AUTH_MODE": "insecure"})
    sidecar.send(signum)
    assert sidecar.wait() == 0
    assert any("draining" in line for line in sidecar.log)
    assert "stopped" in sidecar.log[-1]


async def test_health_watch_sees_not_serving_and_exit_is_within_grace(
    sidecar_factory: StartSidecar,
) -> None:
    grace = 1
    sidecar = sidecar_factory({"AUTH_MODE": "insecure", "SIDECAR_GRACE_SECONDS": str(grace)})
    async with grpc.aio.insecure_channel(sidecar.address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
        watches = [
            health.Watch(health_pb2.HealthCheckRequest(service=service))
            for service in ("", AUTH_SERVICE)
        ]
        for watch in watches:
            assert (await watch.read()).status == SERVING
        signalled = time.monotonic()
        sidecar.send(signal.SIGTERM)
        for watch in watches:
            assert (await watch.read()).status == NOT_SERVING
        code = await asyncio.to_thread(sidecar.wait)
        elapsed = time.monotonic() - signalled
        for watch in watches:  # the open streams end with the server, they do not hang
            assert await watch.code() != grpc.StatusCode.OK
    assert code == 0
    assert elapsed < grace + 2, f"exit took {elapsed:.2f}s with a {grace}s grace period"


async def test_in_flight_calls_complete_after_sigterm(sidecar_factory: StartSidecar) -> None:
    grace = 10
    sidecar = sidecar_factory({"AUTH_MODE": "insecure", "SIDECAR_GRACE_SECONDS": str(grace)})
    users = [f"user-{i}" for i in range(500)]
    async with grpc.aio.insecure_channel(sidecar.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        assert (await stub.Validate(auth_pb2.ValidateRequest(token=unsigned({"sub": "a"})))).valid
        calls = [
            asyncio.ensure_future(
                stub.Validate(auth_pb2.ValidateRequest(token=unsigned({"sub": u})), timeout=30)
            )
            for u in users
        ]
        await next(asyncio.as_completed(calls))  # the server is working through the burst
        in_flight = sum(not call.done() for call in calls)
        signalled = time.monotonic()
        sidecar.send(signal.SIGTERM)
        results = await asyncio.gather(*calls, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    responses = [r for r in results if not isinstance(r, BaseException)]
    assert in_flight > 0
    assert not failed, f"{len(failed)} of {in_flight} in-flight calls failed: {failed[0]!r}"
    assert [r.user_id for r in responses] == users
    assert await asyncio.to_thread(sidecar.wait) == 0
    assert time.monotonic() - signalled < grace


# -- listening ---------------------------------------------------------------------------------


def _serve_once(listen: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "serve"],
        env=clean_env({"AUTH_MODE": "insecure", "SIDECAR_LISTEN": listen}),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def _assert_bind_refused(result: subprocess.CompletedProcess[str], listen: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    listen_lines = [line for line in lines if line.startswith("SIDECAR_LISTEN:")]
    assert len(listen_lines) == 1 and listen in listen_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _assert_serving(address: str) -> None:
    with health_stub(address) as health:
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING


def test_second_sidecar_on_the_same_port_fails(insecure_tcp: str) -> None:
    _assert_bind_refused(_serve_once(insecure_tcp), insecure_tcp)
    _assert_serving(insecure_tcp)


def test_second_sidecar_on_the_same_unix_socket_fails(
    sidecar_factory: StartSidecar, unix_listen: str
) -> None:
    first = sidecar_factory({"AUTH_MODE": "insecure"}, listen=unix_listen)
    _assert_bind_refused(_serve_once(unix_listen), unix_listen)
    _assert_serving(first.address)  # its socket was not taken over


def test_stale_unix_socket_is_replaced(sidecar_factory: StartSidecar, unix_listen: str) -> None:
    """A socket file left by a crashed process (nobody listening) does not block a restart."""
    path = unix_listen.removeprefix("unix:")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)
    sidecar = sidecar_factory({"AUTH_MODE": "insecure"}, listen=unix_listen)
    assert sidecar.address == unix_listen
    _assert_serving(sidecar.address)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_start_up_line_reports_the_bound_address(
    sidecar_factory: StartSidecar, unix_listen: str, transport: str
) -> None:
    listen = "127.0.0.1:0" if transport == "tcp" else unix_listen
    sidecar = sidecar_factory({"AUTH_MODE": "insecure"}, listen=listen)
    assert sidecar.terminate() == 0  # the whole log has been read
    line = sidecar.logged(" serving ")
    assert "serving mode=insecure " in line
    assert f"listen={sidecar.address} " in line
    assert not sidecar.address.endswith(":0")


# -- logging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "RS256"])
def test_logs_name_the_config_never_secrets_and_nothing_per_validate(
    sidecar_factory: StartSidecar, alg: str
) -> None:
    env = secure_env(alg, AUTH_JWT_NAMESPACE="ns", SIDECAR_MINT_SECRET=MINT_SECRET)
    sidecar = sidecar_factory(env)
    now = int(time.time())
    tokens = [
        sign(alg, {"ns": {"user_id": f"u{i}"}, "iat": now, "exp": now + 60}) for i in range(20)
    ]
    tokens += [unsigned({"sub": "a"}), "garbage", tokens[0][:-4]]
    with auth_stub(sidecar.address) as stub:
        for token in tokens:
            validate(stub, token)
        minted = stub.Mint(mint_request("alice"), metadata=BEARER, timeout=10).token
        mint_error(stub, mint_request("alice"), (("authorization", "Bearer wrong-secret"),))
    assert sidecar.terminate() == 0  # the whole log has been read
    start_up = sidecar.logged(" serving ")
    for part in ("mode=secure", f"alg={alg}", f"listen={sidecar.address}", "namespace=ns"):
        assert part in start_up
    log = "\n".join(sidecar.log)
    secrets = [MINT_SECRET, "wrong-secret", minted, *tokens[:-2]]
    if alg.startswith("HS"):
        secrets.append(HS_SECRET)
    else:  # any line of either PEM body
        pair = key_pair(alg)
        pems = (pair.public_pem, pair.private_pem)
        secrets += [line for pem in pems for line in pem.splitlines()]
    leaked = [secret for secret in secrets if secret in log]
    assert not leaked
    # Start-up, one line per Mint call, draining, stopped: nothing per Validate call.
    # (Only the sidecar's own records count here; grpc's C core may add lines of its own.)
    records = [line for line in sidecar.log if LOG_RECORD.match(line)]
    assert len(records) == 5, log
    assert "minted a token for user_id='alice'" in records[1]
    assert "mint refused" in records[2]
    assert ("draining" in records[3], "stopped" in records[4]) == (True, True)


def test_debug_logs_decisions_but_never_tokens(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory({"AUTH_MODE": "insecure", "SIDECAR_LOG_LEVEL": "debug"})
    tokens = [unsigned({"sub": "alice-debug"}), unsigned({"role": "x"}), "garbage-token-text"]
    with auth_stub(sidecar.address) as stub:
        for token in tokens:
            validate(stub, token)
    assert sidecar.terminate() == 0
    decisions = [line for line in sidecar.log if "validate valid=" in line]
    assert len(decisions) == 3
    assert all(" DEBUG " in line for line in decisions)
    log = "\n".join(sidecar.log)
    assert not [token for token in tokens if token in log]
    assert "alice-debug" not in log


@pytest.mark.parametrize(("choice", "runs"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_the_event_loop_is_chosen_by_config(
    sidecar_factory: StartSidecar, choice: str, runs: str
) -> None:
    """uvloop by default (it is a dependency here), asyncio's own loop on request; both serve."""
    sidecar = sidecar_factory({"AUTH_MODE": "insecure", "SIDECAR_EVENT_LOOP": choice})
    with auth_stub(sidecar.address) as stub:
        assert validate(stub, unsigned({"sub": "loop"})).valid
    assert sidecar.logged(" serving ").endswith(f" loop={runs}")
    assert sidecar.terminate() == 0


def test_a_user_id_cannot_forge_a_log_line(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory({"AUTH_MODE": "insecure"})
    forged = "2001-01-01 00:00:00,000 INFO auth-sidecar stopped"
    with auth_stub(sidecar.address) as stub:
        token = stub.Mint(mint_request(f"eve\n{forged}"), timeout=10).token
        assert validate(stub, token).user_id == f"eve\n{forged}"
    assert sidecar.terminate() == 0
    assert forged not in sidecar.log
    assert any("minted a token for user_id='eve\\n2001-01-01" in line for line in sidecar.log)


def test_an_unwritable_ready_file_is_a_start_up_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--ready-file", "/nonexistent/dir/address"],
        env=clean_env({"AUTH_MODE": "insecure", "SIDECAR_LISTEN": "127.0.0.1:0"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "SIDECAR_READY_FILE: cannot write /nonexistent/dir/address: No such file or directory"
    )
