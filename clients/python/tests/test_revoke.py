"""The Python client's revoke_token, revoke_user and revoke_issuer against real sidecar processes
with an embedded revocation store (SIDECAR_STATE_DIR in a temporary directory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support import MINT_SECRET, secure_env, start_sidecar, unsigned

from authsidecar import AsyncAuthClient, AuthClient, Reason

ADMIN_SECRET = "admin-secret-" + "a" * 32  # SIDECAR_ADMIN_SECRET needs 32+ bytes
ISS = "https://issuer.test"


@contextmanager
def running(env: Mapping[str, str]) -> Iterator[str]:
    """A real sidecar process (the embedded store lives in the serving process, which the
    in-process servers do not build); yields its address, and expects a clean exit."""
    sidecar = start_sidecar(env)
    try:
        yield sidecar.address
    finally:
        code = sidecar.terminate()
    assert code == 0, "\n".join(sidecar.log)


@pytest.fixture(scope="module")
def revocable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An insecure sidecar with an embedded revocation store."""
    state = tmp_path_factory.mktemp("state")
    with running({"AUTH_MODE": "insecure", "SIDECAR_STATE_DIR": str(state)}) as address:
        yield address


@pytest.fixture(scope="module")
def secure_revocable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A secure (HS256) sidecar with mint and admin secrets and an embedded revocation store."""
    state = tmp_path_factory.mktemp("secure-state")
    env = secure_env(
        "HS256",
        SIDECAR_MINT_SECRET=MINT_SECRET,
        SIDECAR_ADMIN_SECRET=ADMIN_SECRET,
        SIDECAR_STATE_DIR=str(state),
    )
    with running(env) as address:
        yield address


def assert_revoked(client: AuthClient, token: str) -> None:
    decision = client.validate(token)
    assert decision.valid is False
    assert decision.reason is Reason.REVOKED
    assert str(decision.reason) == "REASON_REVOKED"
    assert decision.message == "Token has been revoked"


def assert_valid(client: AuthClient, token: str) -> None:
    decision = client.validate(token)
    assert decision.valid, decision


def test_revoke_a_token_by_iss_and_jti(revocable: str) -> None:
    exp = int(time.time()) + 3600
    revoked = unsigned({"jti": "tok-1", "sub": "alice", "iss": ISS, "exp": exp})
    sibling = unsigned({"jti": "tok-2", "sub": "alice", "iss": ISS, "exp": exp})
    other_issuer = unsigned({"jti": "tok-1", "sub": "alice", "exp": exp})
    with AuthClient(revocable) as client:
        assert_valid(client, revoked)
        kept_until = client.revoke_token(ISS, "tok-1", datetime.fromtimestamp(exp, UTC))
        assert kept_until is not None and kept_until.utcoffset() == timedelta(0)
        # Kept until exp plus the allowed clock skew.
        assert (
            timedelta(0) <= kept_until - datetime.fromtimestamp(exp, UTC) <= timedelta(minutes=10)
        )
        assert_revoked(client, revoked)
        assert_valid(client, sibling)
        assert_valid(client, other_issuer)
        # Again: harmless.
        client.revoke_token(ISS, "tok-1", datetime.fromtimestamp(exp, UTC))
        assert_revoked(client, revoked)


def test_revoke_a_user(revocable: str) -> None:
    now = int(time.time())
    issued = unsigned({"sub": "bob", "iat": now - 60})
    no_iat = unsigned({"sub": "bob"})
    other_user = unsigned({"sub": "carol", "iat": now - 60})
    old = unsigned({"sub": "dave", "iat": now - 7200})
    recent = unsigned({"sub": "dave", "iat": now - 60})
    with AuthClient(revocable) as client:
        assert_valid(client, issued)
        client.revoke_user("", "bob")  # not_before: now
        assert_revoked(client, issued)
        assert_revoked(client, no_iat)
        assert_valid(client, other_user)
        client.revoke_user("", "dave", datetime.now(UTC) - timedelta(hours=1))
        assert_revoked(client, old)
        assert_valid(client, recent)


def test_revoke_an_issuer(revocable: str) -> None:
    now = int(time.time())
    old = unsigned({"sub": "erin", "iss": "https://compromised.test", "iat": now - 60})
    elsewhere = unsigned({"sub": "erin", "iss": "https://fine.test", "iat": now - 60})
    with AuthClient(revocable) as client:
        client.revoke_issuer("https://compromised.test")
        assert_revoked(client, old)
        assert_valid(client, elsewhere)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.revoke_token("", "  ", datetime.now(UTC) + timedelta(hours=1)),
        lambda c: c.revoke_token("", "tok-3", datetime.now(UTC) - timedelta(hours=1)),
        lambda c: c.revoke_user("", " "),
        lambda c: c.revoke_issuer("", datetime.now(UTC) + timedelta(days=2 * 366)),
    ],
    ids=["blank jti", "past expires_at", "blank user", "not_before over a year ahead"],
)
def test_a_bad_revoke_raises_invalid_argument(
    revocable: str, call: Callable[[AuthClient], object]
) -> None:
    with AuthClient(revocable) as client, pytest.raises(grpc.RpcError) as raised:
        call(client)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_naive_datetime_is_refused_before_any_call(revocable: str) -> None:
    with AuthClient(revocable) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            client.revoke_token("", "tok-3", datetime.now() + timedelta(hours=1))
        with pytest.raises(ValueError, match="timezone-aware"):
            client.revoke_user("", "bob", datetime(2020, 1, 1))


def test_revoke_without_a_store_is_failed_precondition(insecure_tcp: str) -> None:
    with AuthClient(insecure_tcp) as client, pytest.raises(grpc.RpcError) as raised:
        client.revoke_token("", "tok-1", datetime.now(UTC) + timedelta(hours=1))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("secret", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        (ADMIN_SECRET + "x", grpc.StatusCode.PERMISSION_DENIED),
        (MINT_SECRET, grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=["no secret", "wrong secret", "the mint secret"],
)
def test_secure_revoke_needs_the_admin_secret(
    secure_revocable: str, secret: str | None, code: grpc.StatusCode
) -> None:
    with AuthClient(secure_revocable) as client, pytest.raises(grpc.RpcError) as raised:
        client.revoke_user("", "alice", admin_secret=secret)
    assert raised.value.code() == code


async def test_async_revoke_with_the_admin_secret(secure_revocable: str) -> None:
    async with AsyncAuthClient(secure_revocable) as client:
        minted = await client.mint("alice", {"jti": "minted-1"}, mint_secret=MINT_SECRET)
        assert minted.expires_at is not None
        assert (await client.validate(minted.token)).valid
        kept_until = await client.revoke_token(
            "", "minted-1", minted.expires_at, admin_secret=ADMIN_SECRET
        )
        assert kept_until is not None and kept_until >= minted.expires_at
        decision = await client.validate(minted.token)
        assert decision.reason is Reason.REVOKED
        assert decision.message == "Token has been revoked"
        await client.revoke_user("", "alice", admin_secret=ADMIN_SECRET)
        await client.revoke_issuer("", admin_secret=ADMIN_SECRET)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.revoke_user("", " ", admin_secret=ADMIN_SECRET)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
