"""Revocation with the embedded store, on real processes: workers agree, a restart loses nothing,
cached decisions are not served, and Revoke is for trusted callers only."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from proxies import http_api_address
from support import StartSidecar, clean_env, secure_env, sign, unsigned, until

from authsidecar.v1 import auth_pb2, auth_pb2_grpc

ADMIN = "a" * 32
CHANNELS = 12  # distinct connections, so that SO_REUSEPORT spreads them over every worker


def token(jti: str, user: str = "alice", **claims: object) -> str:
    return unsigned({"user_id": user, "jti": jti, "exp": int(time.time()) + 600, **claims})


def stubs(address: str, n: int = 1) -> Iterator[auth_pb2_grpc.AuthServiceStub]:
    for i in range(n):
        channel = grpc.insecure_channel(address, options=[("grpc.channel_id", i)])
        yield auth_pb2_grpc.AuthServiceStub(channel)


def until_serving(address: str, n: int = CHANNELS) -> None:
    """Waits until health is SERVING on `n` connections (so on every worker): with Redis, a
    sidecar serves once its first copy of the revocations is in."""
    channels = [grpc.insecure_channel(address, options=[("grpc.channel_id", i)]) for i in range(n)]
    checks: list[Any] = [health_pb2_grpc.HealthStub(c) for c in channels]
    request = health_pb2.HealthCheckRequest(service="")
    try:
        until(
            lambda: all(
                h.Check(request).status == health_pb2.HealthCheckResponse.SERVING for h in checks
            )
        )
    finally:
        for channel in channels:
            channel.close()


def revoke_token(stub: auth_pb2_grpc.AuthServiceStub, jti: str, **kw: object) -> None:
    revocation = auth_pb2.TokenRevocation(jti=jti)
    revocation.expires_at.seconds = int(time.time()) + 600
    stub.Revoke(auth_pb2.RevokeRequest(token=revocation), **kw)  # type: ignore[arg-type]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_every_worker_refuses_a_revoked_token_and_a_restart_keeps_it(
    sidecar_factory: StartSidecar, tmp_path: Path
) -> None:
    env = {"AUTH_MODE": "insecure", "SIDECAR_STATE_DIR": str(tmp_path), "SIDECAR_WORKERS": "2"}
    sidecar = sidecar_factory(env)
    connections = list(stubs(sidecar.address, CHANNELS))
    revoked, kept = token("j-1"), token("j-2")
    assert all(s.Validate(auth_pb2.ValidateRequest(token=revoked)).valid for s in connections)
    revoke_token(connections[0], "j-1")
    # Every connection, whichever worker serves it, refuses it within the poll interval.
    until(
        lambda: all(
            s.Validate(auth_pb2.ValidateRequest(token=revoked)).reason == auth_pb2.REASON_REVOKED
            for s in connections
        ),
        timeout=5,
    )
    assert all(s.Validate(auth_pb2.ValidateRequest(token=kept)).valid for s in connections)
    # The CLI writes to the same store; the running workers pick it up.
    done = cli("revoke", "--user", "bob", env=env)
    assert done.returncode == 0, done.stderr
    bobs = token("j-3", user="bob", iat=int(time.time()) - 5)
    until(
        lambda: all(not s.Validate(auth_pb2.ValidateRequest(token=bobs)).valid for s in connections)
    )
    sidecar.terminate()
    again = sidecar_factory(env)
    stub = next(stubs(again.address))
    for refused in (revoked, bobs):
        answer = stub.Validate(auth_pb2.ValidateRequest(token=refused))
        assert (answer.reason, answer.message) == (
            auth_pb2.REASON_REVOKED,
            "Token has been revoked",
        )
    assert stub.Validate(auth_pb2.ValidateRequest(token=kept)).valid


def test_a_cached_decision_is_not_served_once_revoked(
    sidecar_factory: StartSidecar, tmp_path: Path
) -> None:
    env = {"AUTH_MODE": "insecure", "SIDECAR_STATE_DIR": str(tmp_path), "SIDECAR_CACHE_SIZE": "100"}
    sidecar = sidecar_factory(env)
    stub = next(stubs(sidecar.address))
    t = token(uuid.uuid4().hex)
    for _ in range(3):  # the second and third are cache hits
        assert stub.Validate(auth_pb2.ValidateRequest(token=t)).valid
    claims = stub.Validate(auth_pb2.ValidateRequest(token=t)).claims
    revoke_token(stub, str(claims["jti"]))
    # The worker that revoked holds it at once: the very next call is refused.
    assert stub.Validate(auth_pb2.ValidateRequest(token=t)).reason == auth_pb2.REASON_REVOKED
    # A reload builds new deciders and a new cache over the same revocations.
    sidecar.send(signal.SIGHUP)
    sidecar.logged("reloaded (SIGHUP)")
    assert stub.Validate(auth_pb2.ValidateRequest(token=t)).reason == auth_pb2.REASON_REVOKED


def test_revoke_is_for_callers_with_the_admin_secret(
    sidecar_factory: StartSidecar, tmp_path: Path
) -> None:
    env = secure_env("HS256", SIDECAR_STATE_DIR=str(tmp_path), SIDECAR_ADMIN_SECRET=ADMIN)
    stub = next(stubs(sidecar_factory(env).address))
    now = int(time.time())
    t = sign("HS256", {"sub": "alice", "jti": "s-1", "iat": now, "exp": now + 600})
    assert stub.Validate(auth_pb2.ValidateRequest(token=t)).valid
    for metadata, code in (
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer " + "b" * 32),), grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            revoke_token(stub, "s-1", metadata=metadata)
        assert refused.value.code() is code
    with pytest.raises(grpc.RpcError) as bad:
        stub.Revoke(
            auth_pb2.RevokeRequest(token=auth_pb2.TokenRevocation(jti="s-1")),
            metadata=(("authorization", "Bearer " + ADMIN),),
        )
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as empty:
        stub.Revoke(auth_pb2.RevokeRequest(), metadata=(("authorization", "Bearer " + ADMIN),))
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert stub.Validate(auth_pb2.ValidateRequest(token=t)).valid
    stub.Revoke(
        auth_pb2.RevokeRequest(user=auth_pb2.UserRevocation(user_id="alice")),
        metadata=(("authorization", "Bearer " + ADMIN),),
    )
    assert stub.Validate(auth_pb2.ValidateRequest(token=t)).reason == auth_pb2.REASON_REVOKED


def test_without_a_store_revoke_is_off(sidecar_factory: StartSidecar) -> None:
    stub = next(stubs(sidecar_factory({"AUTH_MODE": "insecure"}).address))
    with pytest.raises(grpc.RpcError) as off:
        revoke_token(stub, "x")
    assert off.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "SIDECAR_STATE_DIR" in (off.value.details() or "")


def test_health_names_the_revocations(sidecar_factory: StartSidecar, tmp_path: Path) -> None:
    env = {"AUTH_MODE": "insecure", "SIDECAR_STATE_DIR": str(tmp_path)}
    address = sidecar_factory(env).address
    with grpc.insecure_channel(address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING

        def status(name: str) -> int:
            request = health_pb2.HealthCheckRequest(service=name)
            return int(health.Check(request).status)

        # The embedded store's first copy is in before the ready file: SERVING at once, and a
        # launcher that sees the file can call (CI once saw UNAVAILABLE right after start-up).
        assert (status(""), status("authsidecar.v1.Revocations")) == (serving, serving)


def test_bad_store_settings_are_one_line_each(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = cli(
        "serve",
        env={
            "AUTH_MODE": "insecure",
            "SIDECAR_STATE_DIR": str(blocked / "sub"),
            "SIDECAR_REVOCATION_FAIL": "maybe",
        },
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "SIDECAR_REVOCATION_FAIL",
        "SIDECAR_STATE_DIR",
    ], done.stderr
    done = cli("revoke", "--jti", "x", env={"AUTH_MODE": "insecure"})
    assert (done.returncode, done.stderr.split(":")[0]) == (2, "revoke")


def _http(address: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{address}{path}", data=body, headers=headers, method="POST" if body else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_forward_auth_connect_and_metrics(sidecar_factory: StartSidecar, tmp_path: Path) -> None:
    env = {
        "AUTH_MODE": "insecure",
        "SIDECAR_STATE_DIR": str(tmp_path),
        "SIDECAR_HTTP_API_LISTEN": "127.0.0.1:0",
        "SIDECAR_HTTP_LISTEN": "127.0.0.1:0",
    }
    sidecar = sidecar_factory(env)
    api = http_api_address(sidecar.logged(" http_api="))
    t = token("h-1")
    assert _http(api, "/auth", Authorization="Bearer " + t)[0] == 200
    body = json.dumps({"token": {"jti": "h-1", "expiresAt": "2099-01-01T00:00:00Z"}}).encode()
    status, text = _http(
        api, "/authsidecar.v1.AuthService/Revoke", body, **{"Content-Type": "application/json"}
    )
    # Kept until 2099 is refused (over a year ahead): INVALID_ARGUMENT, as over gRPC.
    assert (status, json.loads(text)["code"]) == (400, "invalid_argument")
    exp = datetime.datetime.fromtimestamp(time.time() + 600, datetime.UTC).isoformat()
    body = json.dumps({"token": {"jti": "h-1", "expiresAt": exp.replace("+00:00", "Z")}}).encode()
    status, text = _http(
        api, "/authsidecar.v1.AuthService/Revoke", body, **{"Content-Type": "application/json"}
    )
    assert status == 200, text
    assert "keptUntil" in json.loads(text)
    status, text = _http(api, "/auth", Authorization="Bearer " + t)
    assert (status, json.loads(text)["reason"]) == (401, "REASON_REVOKED")
    side = sidecar.logged(" serving ").split(" http=")[1].split()[0]

    def metrics() -> str:
        return _http(side, "/metrics")[1]

    until(lambda: "auth_sidecar_revocations_held 1.0" in metrics())
    text = metrics()
    assert "auth_sidecar_revocations_stale 0.0" in text
    assert "auth_sidecar_revocations_sync_age_seconds" in text
