"""Logs: JSON lines from a real sidecar, the decision log (never the token), repeated warnings
rate-limited with an injected clock."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from support import Sidecar, running, secure_env, sign

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar.observe import logs
from sidecar.observe.observability import token_hash

STABLE = ("time", "level", "logger", "pid", "message")


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    env = secure_env(
        "HS256",
        AUTH_JWT_ISS="https://issuer.test",
        SIDECAR_LOG_FORMAT="json",
        SIDECAR_DECISION_LOG="true",
    )
    with running(env) as started:
        yield started


def _entries(sidecar: Sidecar, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The first `count` decision entries, once the log reader has them (a bounded poll)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [json.loads(line) for line in list(sidecar.log)]
        decisions = [e for e in entries if e["logger"] == "auth-sidecar.decisions"]
        if len(decisions) >= count or time.monotonic() > deadline:
            return decisions
        time.sleep(0.01)  # paces the poll


def test_every_line_is_json_and_decisions_carry_their_fields(sidecar: Sidecar) -> None:
    now = int(time.time())
    claims = {"sub": "ann", "iat": now, "exp": now + 600, "iss": "https://issuer.test"}
    with_jti = sign("HS256", {**claims, "jti": "token-7"})
    without_jti = sign("HS256", claims)
    forged = with_jti[:-4] + ("AAAA" if not with_jti.endswith("AAAA") else "BBBB")
    with grpc.insecure_channel(sidecar.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        for token in (with_jti, without_jti, forged):
            stub.Validate(auth_pb2.ValidateRequest(token=token), timeout=10)
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        request = external_auth_pb2.CheckRequest()
        request.attributes.request.http.headers["authorization"] = f"Bearer {with_jti}"
        check(request, timeout=10)
    decisions = _entries(sidecar, 4)
    for entry in [json.loads(line) for line in sidecar.log]:
        assert all(key in entry for key in STABLE), entry
    for entry in decisions:
        assert entry["message"] == "decision" and entry["level"] == "info"
        assert entry.pop("latency_ms") >= 0
        for key in (*STABLE, "latency_ms"):
            entry.pop(key, None)
    assert decisions == [
        {
            "rpc": "Validate",
            "valid": True,
            "reason": "REASON_UNSPECIFIED",
            "user_id": "ann",
            "token_id": "jti:token-7",
            "iss": "https://issuer.test",
        },
        {
            "rpc": "Validate",
            "valid": True,
            "reason": "REASON_UNSPECIFIED",
            "user_id": "ann",
            "token_id": f"sha256:{token_hash(without_jti)}",
            "iss": "https://issuer.test",
        },
        {
            "rpc": "Validate",
            "valid": False,
            "reason": "REASON_BAD_SIGNATURE",
            "user_id": None,
            "token_id": f"sha256:{token_hash(forged)}",
            "iss": None,
        },
        {
            "rpc": "Check",
            "valid": True,
            "reason": "REASON_UNSPECIFIED",
            "user_id": "ann",
            "token_id": "jti:token-7",
            "iss": "https://issuer.test",
        },
    ]
    text = "\n".join(sidecar.log)
    for token in (with_jti, without_jti, forged):
        assert token.split(".")[2] not in text
        assert token.split(".")[1] not in text


def _record(msg: str, level: int = logging.WARNING, **extra: Any) -> logging.LogRecord:
    args = ("x",) if "%s" in msg else ()
    record = logging.LogRecord("auth-sidecar", level, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_repeated_warnings_are_held_back_and_counted() -> None:
    now = [0.0]
    limit = logs.RepeatFilter(60, lambda: now[0])
    assert limit.filter(_record("jwks fetch failed: %s"))
    now[0] = 30
    assert not limit.filter(_record("jwks fetch failed: %s"))
    assert not limit.filter(_record("jwks fetch failed: %s"))
    assert limit.filter(_record("another warning: %s"))  # a different template passes
    assert limit.filter(_record("info passes: %s", logging.INFO))
    now[0] = 60
    again = _record("jwks fetch failed: %s")
    assert limit.filter(again)
    assert getattr(again, "suppressed", None) == 2
    line = json.loads(logs.JsonFormatter().format(again))
    assert (line["message"], line["suppressed"]) == ("jwks fetch failed: x", 2)


def test_text_format_appends_fields() -> None:
    formatter = logs.TextFormatter("%(levelname)s %(message)s")
    record = _record("decision", logging.INFO, fields={"rpc": "Validate", "user_id": "a\nb"})
    assert formatter.format(record) == "INFO decision rpc='Validate' user_id='a\\nb'"


def test_configure_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("info", "json")
        logging.getLogger("auth-sidecar").info("two\nlines")
        (line,) = capsys.readouterr().err.splitlines()
        assert json.loads(line)["message"] == "two\nlines"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
