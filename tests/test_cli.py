"""The `auth-sidecar` command, run as a real subprocess: `python -m sidecar ...`."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inprocess import in_thread
from support import (
    HS_SECRET,
    StartSidecar,
    blackhole,
    clean_env,
    closed_port,
    key_pair,
    secure_env,
    sign,
    unsigned,
    verify_material,
)

from sidecar import __version__, config

SUBCOMMANDS = ("serve", "mint", "validate", "health")


def cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env=clean_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def decision(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    padded = segment + "=" * (-len(segment) % 4)
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return parsed


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: auth-sidecar" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr


INSECURE = {"AUTH_MODE": "insecure"}


# -- version and help --------------------------------------------------------------------------


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"auth-sidecar {__version__}\n"


def test_top_level_help_lists_every_subcommand() -> None:
    result = cli("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: auth-sidecar")
    for command in SUBCOMMANDS:
        assert command in result.stdout


SETTING_FLAGS = [setting.flag for setting in config.SETTINGS]
# What changes a token's decision, or a minted token: the only settings mint and validate offer.
TOKEN_FLAGS = [
    "--mode",
    "--jwt-alg",
    "--jwt-key",
    "--jwt-key-file",
    "--jwt-jwks-file",
    "--jwt-jwks-url",
    "--jwt-oidc-issuer",
    "--config-file",
    "--jwks-allow-http",
    "--jwt-namespace",
    "--jwt-iss",
    "--jwt-aud",
    "--jwt-typ",
    "--jwt-max-lifetime-seconds",
    "--max-token-bytes",
]
MINT_FLAGS = [*TOKEN_FLAGS, "--jwt-signing-key", "--jwt-signing-key-file", "--mint-max-ttl-seconds"]
MINT_FLAGS += ["--shape-claim"]  # the claim that the --shape-* flags write
SHAPE_FLAGS = ["--shape-table", "--shape-namespace", "--shape-where", "--shape-columns"]
SHAPE_FLAGS += ["--shape-param"]
# Validate fetches a JWKS URL's keys once.
FETCH_FLAGS = [
    "--jwks-refresh-seconds",
    "--jwks-min-refresh-seconds",
    "--jwks-timeout-seconds",
    "--jwks-max-bytes",
    "--jwks-ca-file",
]
VALIDATE_FLAGS = [*TOKEN_FLAGS, *FETCH_FLAGS, "--clock-skew-seconds"]


@pytest.mark.parametrize(
    ("command", "expected", "flags"),
    [
        ("serve", [], SETTING_FLAGS),
        ("mint", ["USER_ID"], ["--claim", "--ttl", *MINT_FLAGS, *SHAPE_FLAGS]),
        ("validate", ["TOKEN", "stdin"], VALIDATE_FLAGS),
        (
            "health",
            [],
            [
                "--target",
                "--service",
                "--timeout",
                "--ca-file",
                "--cert-file",
                "--key-file",
                "--server-name",
            ],
        ),
    ],
)
def test_subcommand_help_lists_only_its_own_flags(
    command: str, expected: list[str], flags: list[str]
) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"usage: auth-sidecar {command}")
    # argparse wraps long lines; compare word by word.
    words = " ".join(result.stdout.split())
    for item in expected:
        assert item in words, item
    assert set(re.findall(r"--[a-z][a-z-]*", words)) == {"--help", *flags}
    if command != "health":  # each setting's flag names its variable; the others are absent
        for setting in config.SETTINGS:
            assert (setting.env in words) == (setting.flag in flags), setting.env


@pytest.mark.parametrize(("command", "flag"), [("mint", "--listen"), ("validate", "--mint-secret")])
def test_a_flag_of_another_subcommand_is_a_usage_error(command: str, flag: str) -> None:
    args = ["alice"] if command == "mint" else ["token"]
    result = cli(command, *args, flag, "x", env=INSECURE)
    assert_usage_error(result, "unrecognized arguments", flag)


def test_mint_and_validate_still_read_every_variable() -> None:
    """Only flags are per subcommand: a serve-only variable set in the environment is checked."""
    result = cli("mint", "alice", env={**INSECURE, "SIDECAR_LISTEN": "nowhere"})
    assert result.returncode == 2
    assert result.stderr.startswith("SIDECAR_LISTEN: must be host:port")


# -- mint and validate -------------------------------------------------------------------------


def test_insecure_mint_then_validate() -> None:
    before = int(time.time())
    minted = cli(
        "mint", "alice", "--claim", "role=admin", "--claim", "n=3", "--claim", "admin=true",
        "--claim", "note=a=b", "--ttl", "1h", env=INSECURE,
    )  # fmt: skip
    after = int(time.time())
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert minted.stdout == token + "\n"
    claims = payload(token)
    assert before + 3600 <= claims.pop("exp") <= after + 3600
    assert claims == {"role": "admin", "n": 3, "admin": True, "note": "a=b", "user_id": "alice"}
    assert token.endswith(".")  # unsigned: alg none, empty signature

    checked = cli("validate", token, env=INSECURE)
    assert checked.returncode == 0, checked.stderr
    result = decision(checked)
    assert result["valid"] is True
    assert result["user_id"] == "alice"
    assert (result["reason"], result["message"]) == ("REASON_UNSPECIFIED", "")
    assert result["claims"]["role"] == "admin"
    assert result["expires_at"] == payload(token)["exp"]


def test_insecure_mint_without_ttl_has_no_exp() -> None:
    minted = cli("mint", "bob", env=INSECURE)
    assert minted.returncode == 0
    assert payload(minted.stdout.strip()) == {"user_id": "bob"}


@pytest.mark.parametrize("alg", ["HS256", "RS256"])
def test_secure_mint_then_validate(alg: str) -> None:
    env = secure_env(alg)  # RS256 comes with AUTH_JWT_SIGNING_KEY
    minted = cli("mint", "carol", "--claim", "plan=pro", "--ttl", "30m", env=env)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    claims = jwt.decode(token, verify_material(alg), algorithms=[alg])
    assert claims["user_id"] == "carol" and claims["plan"] == "pro"
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert claims["iat"] == claims["nbf"]

    checked = cli("validate", token, env=env)
    assert checked.returncode == 0, checked.stderr
    assert (decision(checked)["valid"], decision(checked)["user_id"]) == (True, "carol")


def test_secure_mint_default_ttl_is_fifteen_minutes() -> None:
    minted = cli("mint", "dave", env=secure_env("HS256"))
    claims = jwt.decode(minted.stdout.strip(), HS_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_rs256_mint_without_signing_key_says_what_is_missing() -> None:
    env = secure_env("RS256")
    del env["AUTH_JWT_SIGNING_KEY"]
    result = cli("mint", "erin", env=env)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "AUTH_JWT_SIGNING_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def _foreign_hs256(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, "x" * 64, algorithm="HS256")


@pytest.mark.parametrize(
    ("env", "token", "reason", "message"),
    [
        (INSECURE, lambda now: "not-a-token", "REASON_MALFORMED", "Invalid token"),
        (
            INSECURE,
            lambda now: unsigned({"sub": "a", "exp": now - 60}),
            "REASON_EXPIRED",
            "Expired token",
        ),
        (
            secure_env("HS256"),
            lambda now: _foreign_hs256({"sub": "a", "iat": now, "exp": now + 60}),
            "REASON_BAD_SIGNATURE",
            "Invalid token signature",
        ),
    ],
    ids=["malformed", "expired", "bad signature"],
)
def test_validate_refusal_exits_one_with_the_reason(
    env: dict[str, str], token: Any, reason: str, message: str
) -> None:
    result = cli("validate", token(int(time.time())), env=env)
    assert result.returncode == 1
    parsed = decision(result)
    assert (parsed["valid"], parsed["reason"], parsed["message"]) == (False, reason, message)
    assert (parsed["user_id"], parsed["claims"], parsed["expires_at"]) == ("", {}, None)


def test_validate_reads_the_token_from_stdin() -> None:
    now = int(time.time())
    token = sign("HS256", {"sub": "frank", "iat": now, "exp": now + 60})
    result = cli("validate", "-", env=secure_env("HS256"), stdin=token + "\n")
    assert result.returncode == 0, result.stdout
    assert decision(result)["user_id"] == "frank"
    refused = cli("validate", "-", env=secure_env("HS256"), stdin="junk\n")
    assert refused.returncode == 1
    assert decision(refused)["reason"] == "REASON_MALFORMED"


@pytest.mark.parametrize("ttl", ["1x", "-5", "", "1.5h"])
def test_bad_ttl_is_a_usage_error(ttl: str) -> None:
    assert_usage_error(cli("mint", "alice", "--ttl", ttl, env=INSECURE), "--ttl", "duration")


@pytest.mark.parametrize("claim", ["novalue", "=v"])
def test_bad_claim_is_a_usage_error(claim: str) -> None:
    assert_usage_error(cli("mint", "alice", "--claim", claim, env=INSECURE), "--claim", "key=value")


def test_mint_refusals_exit_non_zero_without_traceback() -> None:
    for args in (["--ttl", "2d"], ["--claim", "user_id=root"]):
        result = cli("mint", "alice", *args, env=INSECURE)
        assert result.returncode == 2, args
        assert result.stdout == ""
        assert result.stderr.startswith("mint: "), result.stderr
        assert "Traceback" not in result.stderr


# -- bad configuration -------------------------------------------------------------------------


def _pem(private: ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


BAD_CONFIGS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    # name: (env, {variable: a fragment of its line})
    "everything at once": (
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "HS999",
            "SIDECAR_CLOCK_SKEW_SECONDS": "soon",
            "SIDECAR_LISTEN": "nowhere",
            "SIDECAR_LOG_LEVEL": "loud",
            "SIDECAR_EVENT_LOOP": "trio",
        },
        {
            "AUTH_JWT_ALG": "Missing or invalid 'alg'",
            "AUTH_JWT_KEY": "Missing 'key'",
            "SIDECAR_CLOCK_SKEW_SECONDS": "soon",
            "SIDECAR_LISTEN": "nowhere",
            "SIDECAR_LOG_LEVEL": "loud",
            "SIDECAR_EVENT_LOOP": "trio",
        },
    ),
    "short HS key": (
        {"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": "k" * 31},
        {"AUTH_JWT_KEY": "The 'key' needs to be at least 32 bytes long for HS256"},
    ),
    "secure settings in insecure mode": (
        {"AUTH_MODE": "insecure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": HS_SECRET},
        {"AUTH_JWT_ALG": "AUTH_MODE=secure", "AUTH_JWT_KEY": "AUTH_MODE=secure"},
    ),
    "wrong curve": (
        {"AUTH_JWT_ALG": "ES256", "AUTH_JWT_KEY": _pem(ec.generate_private_key(ec.SECP384R1()))},
        {"AUTH_JWT_KEY": "P-256"},
    ),
    "EC key for RS256": (
        {"AUTH_JWT_ALG": "RS256", "AUTH_JWT_KEY": key_pair("ES256").public_pem},
        {"AUTH_JWT_KEY": "RSA"},
    ),
    "signing key of another pair": (
        {
            "AUTH_JWT_ALG": "ES256",
            "AUTH_JWT_KEY": key_pair("ES256").public_pem,
            "AUTH_JWT_SIGNING_KEY": ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode(),
        },
        {"AUTH_JWT_SIGNING_KEY": "AUTH_JWT_KEY"},
    ),
    "short mint secret": (
        {**secure_env("HS256"), "SIDECAR_MINT_SECRET": "short"},
        {"SIDECAR_MINT_SECRET": "32"},
    ),
}


@pytest.mark.parametrize(("env", "expected"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_serve_with_bad_config_prints_one_line_per_problem(
    env: dict[str, str], expected: dict[str, str]
) -> None:
    started = time.monotonic()
    result = cli("serve", env={"SIDECAR_LISTEN": "127.0.0.1:0", **env})
    assert time.monotonic() - started < 10  # at once: it never gets to serve
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(expected), result.stderr
    by_variable = {line.partition(": ")[0]: line for line in lines}
    assert set(by_variable) == set(expected), result.stderr
    for variable, fragment in expected.items():
        assert fragment in by_variable[variable]
    for line in lines:  # and nothing secret is echoed back
        assert HS_SECRET not in line and "PRIVATE KEY" not in line


def test_mint_and_validate_report_bad_config_the_same_way() -> None:
    env = {"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": "short"}
    for args in (["mint", "alice"], ["validate", "x.y."]):
        result = cli(*args, env=env)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "AUTH_JWT_KEY: The 'key' needs to be at least 32 bytes long for HS256"
        ]
        assert result.stdout == ""


# -- flags override the environment ------------------------------------------------------------


def test_flag_beats_variable() -> None:
    token = unsigned({"sub": "gina"})
    # The environment alone is a bad secure config; the flag makes it insecure.
    relaxed = cli("validate", "--mode", "insecure", token, env={"AUTH_MODE": "secure"})
    assert relaxed.returncode == 0, relaxed.stderr
    assert decision(relaxed)["user_id"] == "gina"
    # The environment says insecure; the flags make it secure, and `alg: none` is refused.
    strict = cli(
        "validate", "--mode", "secure", "--jwt-alg", "HS256", "--jwt-key", HS_SECRET, token,
        env=INSECURE,
    )  # fmt: skip
    assert strict.returncode == 1
    assert decision(strict)["reason"] == "REASON_ALGORITHM_MISMATCH"
    # A namespace flag beats the variable.
    nested = unsigned({"b": {"user_id": "hana"}})
    env = {**INSECURE, "AUTH_JWT_NAMESPACE": "a"}
    namespaced = cli("validate", "--jwt-namespace", "b", nested, env=env)
    assert (namespaced.returncode, decision(namespaced)["user_id"]) == (0, "hana")


def test_serve_flags_beat_variables(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory(
        {"AUTH_MODE": "secure", "SIDECAR_LISTEN": "nowhere"},
        args=["--mode", "insecure", "--listen", "127.0.0.1:0"],
    )
    assert sidecar.address.startswith("127.0.0.1:")
    assert cli("health", "--target", sidecar.address).returncode == 0
    assert sidecar.terminate() == 0  # the whole log has been read
    assert "mode=insecure" in sidecar.logged(" serving ")


# -- health ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """An in-process server for the `health` command to ask: its address."""
    with in_thread(config.load(INSECURE)) as address:
        yield address


def test_health_against_a_running_sidecar(served: str) -> None:
    result = cli("health", "--target", served)
    assert (result.returncode, result.stdout) == (0, f"{served}: SERVING\n")
    service = "authsidecar.v1.AuthService"
    per_service = cli("health", "--target", served, "--service", service)
    assert per_service.returncode == 0 and "SERVING" in per_service.stdout


def test_health_target_defaults_to_sidecar_listen(served: str) -> None:
    result = cli("health", env={"SIDECAR_LISTEN": served})
    assert (result.returncode, result.stdout) == (0, f"{served}: SERVING\n")


def test_health_of_an_unknown_service_fails(served: str) -> None:
    result = cli("health", "--target", served, "--service", "nope.Service")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def test_health_over_a_unix_socket(sidecar_factory: StartSidecar, unix_listen: str) -> None:
    sidecar = sidecar_factory(INSECURE, listen=unix_listen)
    result = cli("health", "--target", sidecar.address)
    assert result.returncode == 0 and "SERVING" in result.stdout


def test_health_against_a_closed_port_fails_fast() -> None:
    target = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = cli("health", "--target", target, "--timeout", "1")
    assert result.returncode == 1
    assert time.monotonic() - started < 5
    assert result.stderr.startswith(f"{target}: ")
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_against_a_silent_server_times_out() -> None:
    with blackhole() as target:
        started = time.monotonic()
        result = cli("health", "--target", target, "--timeout", "1")
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "DEADLINE_EXCEEDED" in result.stderr
    assert 1 <= elapsed < 5


def test_health_while_draining_fails(sidecar_factory: StartSidecar) -> None:
    sidecar = sidecar_factory({**INSECURE, "SIDECAR_GRACE_SECONDS": "30"})
    with grpc.insecure_channel(sidecar.address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
        # An open Watch keeps the sidecar draining (not gone) until the channel closes.
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        sidecar.send(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        result = cli("health", "--target", sidecar.address, "--timeout", "2")
        watch.cancel()
    assert result.returncode == 1
    assert "NOT_SERVING" in result.stdout or "UNAVAILABLE" in result.stderr
    assert sidecar.wait() == 0


# -- mint --shape-* ------------------------------------------------------------------------------


def test_mint_writes_the_shape_claim_from_the_shape_flags() -> None:
    minted = cli(
        "mint", "alice", "--shape-table", "items", "--shape-namespace", "app",
        "--shape-where", "owner = $1 and state = $2", "--shape-columns", 'id,"Title"',
        "--shape-param", "alice", "--shape-param", "open", env=INSECURE,
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    assert payload(minted.stdout.strip())["shape"] == {
        "table": "items",
        "namespace": "app",
        "where": "owner = $1 and state = $2",
        "columns": 'id,"Title"',
        "params": ["alice", "open"],
    }


def test_mint_writes_the_shape_under_the_configured_claim_and_only_given_fields() -> None:
    env = {**INSECURE, "SIDECAR_SHAPE_CLAIM": "https://app.example/shape"}
    minted = cli("mint", "bob", "--shape-table", "items", env=env)
    assert minted.returncode == 0, minted.stderr
    claims = payload(minted.stdout.strip())
    assert claims["https://app.example/shape"] == {"table": "items"}
    assert "shape" not in claims
    assert "shape" not in payload(cli("mint", "bob", env=INSECURE).stdout.strip())


def test_shape_flags_without_a_table_are_refused() -> None:
    minted = cli("mint", "bob", "--shape-where", "true", env=INSECURE)
    assert (minted.returncode, minted.stdout) == (2, "")
    assert minted.stderr == "mint: the --shape-* flags need --shape-table\n"
