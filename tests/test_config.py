"""The config loader: defaults, Electric's wording, keys, *_FILE variants, flags and secrecy."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import secrets
import time
from functools import cache
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support import ALGORITHMS, CURVE_NAMES, CURVES, HS_SECRET, key_pair, secure_env, sign

from sidecar import config
from sidecar.config import SECURE_ONLY, SETTINGS, Config, parsers
from sidecar.core.errors import ConfigError
from sidecar.core.policy import Mode
from sidecar.keys.fetch import FetchSettings
from sidecar.runtime import eventloop

RS_ALGS = ("RS256", "RS384", "RS512")
ES_ALGS = ("ES256", "ES384", "ES512")
HS_MIN = {"HS256": 32, "HS384": 48, "HS512": 64}
MINT_SECRET = "m" * 40
FORGOT = "Did you forget to set AUTH_MODE=secure?"
ALG_PROBLEM = "AUTH_JWT_ALG: Missing or invalid 'alg' configuration option for secure auth mode"
KEY_PROBLEM = "AUTH_JWT_KEY: Missing 'key' configuration option for secure auth mode"


def problems(env: dict[str, str], flags: dict[str, str | None] | None = None) -> list[str]:
    """The problem lines for a config that must fail to load."""
    with pytest.raises(ConfigError) as raised:
        config.load(env, flags)
    lines = raised.value.problems
    assert str(raised.value) == "\n".join(lines)
    assert lines, "a ConfigError without problems"
    return lines


def only_problem(env: dict[str, str], flags: dict[str, str | None] | None = None) -> str:
    lines = problems(env, flags)
    assert len(lines) == 1, lines
    return lines[0]


def hs_env(alg: str, key: str, **extra: str) -> dict[str, str]:
    return {"AUTH_MODE": "secure", "AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": key, **extra}


def accepts(cfg: Config, token: str, user: str = "alice") -> bool:
    decision = config.build_validator(cfg).decide(token)
    return decision.valid and decision.user_id == user


def hs_token(alg: str, key: bytes | str) -> str:
    """A fresh token signed by PyJWT with `key` as the HMAC secret."""
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 60}, key, algorithm=alg)


def pem_public(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem_private(private: object, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return private.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@cache
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@cache
def other_private(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(CURVES[alg])


# ---------------------------------------------------------------------------------------------
# Defaults


def test_insecure_defaults() -> None:
    cfg = config.load({"AUTH_MODE": "insecure"})
    assert cfg.mode == "insecure"
    assert cfg.alg is None
    assert cfg.namespace is None
    assert cfg.iss is None
    assert cfg.aud is None
    assert cfg.listen == "127.0.0.1:50051"
    assert cfg.clock_skew == 2
    assert cfg.max_token_bytes == 8192
    assert cfg.mint_max_ttl == 86400
    assert cfg.max_concurrent_rpcs == 1000
    assert cfg.grace_seconds == 5.0
    assert cfg.log_level == "info"
    assert cfg.verifier is None
    assert cfg.signer is None
    assert cfg.mint_secret is None
    assert cfg.policy.required == ()


def test_secure_is_the_default_mode() -> None:
    cfg = config.load({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": HS_SECRET})
    assert cfg.mode == "secure"
    assert cfg.alg == "HS256"
    assert cfg.verifier is not None and cfg.signer is not None
    assert cfg.verifier.verify({}, b"x.y", cfg.signer.sign(b"x.y"))  # one shared secret
    assert cfg.policy.required == ("iat", "exp")


def test_nothing_set_is_secure_mode_without_alg_or_key() -> None:
    assert problems({}) == [
        f"{ALG_PROBLEM} (expected one of {', '.join(ALGORITHMS)})",
        KEY_PROBLEM,
    ]


def test_settings_table_matches_the_defaults() -> None:
    table = {s.env: s.default for s in SETTINGS}
    assert table["AUTH_MODE"] == "secure"
    assert table["SIDECAR_LISTEN"] == "127.0.0.1:50051"
    assert table["SIDECAR_CLOCK_SKEW_SECONDS"] == "2"
    assert table["SIDECAR_MAX_TOKEN_BYTES"] == "8192"
    flags = [s.flag for s in SETTINGS]
    assert len(set(flags)) == len(flags)
    assert "--listen" in flags
    assert "--clock-skew-seconds" in flags


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_config_per_algorithm(alg: str) -> None:
    cfg = config.load(secure_env(alg, AUTH_JWT_ISS="me", AUTH_JWT_AUD="you"))
    assert (cfg.mode, cfg.alg, cfg.iss, cfg.aud) == ("secure", alg, "me", "you")
    assert cfg.policy.required == ("iat", "exp", "iss", "aud")
    assert cfg.verifier is not None
    assert cfg.signer is not None


def test_iss_and_aud_are_required_only_when_set() -> None:
    base = secure_env("HS256")
    assert config.load({**base, "AUTH_JWT_ISS": "me"}).policy.required == ("iat", "exp", "iss")
    assert config.load({**base, "AUTH_JWT_AUD": "you"}).policy.required == ("iat", "exp", "aud")


# ---------------------------------------------------------------------------------------------
# AUTH_JWT_ALG and AUTH_JWT_KEY, in Electric's words


@pytest.mark.parametrize(
    "alg", ["", "none", "hs256", "HS1024", "ps256", "eddsa", "ED25519", "PS1024", "ES256K"]
)
def test_bad_alg(alg: str) -> None:
    line = only_problem({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": HS_SECRET})
    assert line.startswith(ALG_PROBLEM)
    assert "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512" in line


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_missing_key(alg: str) -> None:
    assert only_problem({"AUTH_JWT_ALG": alg}) == KEY_PROBLEM


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hs_key_length(alg: str) -> None:
    need = HS_MIN[alg]
    assert only_problem(hs_env(alg, "k" * (need - 1))) == (
        f"AUTH_JWT_KEY: The 'key' needs to be at least {need} bytes long for {alg}"
    )
    cfg = config.load(hs_env(alg, "k" * need))
    assert accepts(cfg, hs_token(alg, "k" * need))
    assert not accepts(cfg, hs_token(alg, "j" * need))


def test_hs_key_length_counts_bytes_not_characters() -> None:
    assert config.load(hs_env("HS256", "é" * 16)).alg == "HS256"  # 16 chars, 32 bytes
    assert "at least 32 bytes" in only_problem(hs_env("HS256", "k" * 31))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hs_base64_key(alg: str) -> None:
    raw = secrets.token_bytes(HS_MIN[alg])
    cfg = config.load(hs_env(alg, "base64:" + base64.b64encode(raw).decode()))
    assert accepts(cfg, hs_token(alg, raw))
    # The text after the prefix is not itself the key.
    assert not accepts(cfg, hs_token(alg, base64.b64encode(raw)))


def test_hs_base64_key_length_is_counted_after_decoding() -> None:
    short = base64.b64encode(b"x" * 31).decode()
    assert len(short) >= 32
    assert only_problem(hs_env("HS256", "base64:" + short)) == (
        "AUTH_JWT_KEY: The 'key' needs to be at least 32 bytes long for HS256"
    )
    assert "at least 32 bytes" in only_problem(hs_env("HS256", "base64:"))


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        "QUJD*REVG",
        "QUJDREVG-_",  # base64url alphabet is not standard base64
        "QUJDREVGRw",  # missing padding
        "QUJD REVG",
        "QUJDREVG\u00e9",  # non-ASCII
        "Q\u0660JDREVG",
    ],
)
def test_hs_invalid_base64_key(value: str) -> None:
    assert only_problem(hs_env("HS256", "base64:" + value)) == (
        "AUTH_JWT_KEY: the value after 'base64:' is not valid standard base64"
    )


def test_hex_key_is_not_base64_decoded() -> None:
    """`openssl rand -hex 32` gives 64 characters: 64 bytes of key, never 48 decoded ones."""
    hex_key = secrets.token_hex(32)
    assert len(hex_key) == 64
    cfg = config.load(hs_env("HS512", hex_key))  # would be too short if decoded
    assert accepts(cfg, hs_token("HS512", hex_key.encode()))
    assert not accepts(cfg, hs_token("HS512", base64.b64decode(hex_key) + b"\0" * 16))


def test_plain_base64_looking_key_is_used_as_is() -> None:
    key = base64.b64encode(b"k" * 48).decode()  # 64 characters of valid base64
    cfg = config.load(hs_env("HS256", key))
    assert accepts(cfg, hs_token("HS256", key))


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_hs_key_that_is_a_pem(alg: str) -> None:
    line = only_problem(hs_env(alg, key_pair("RS256").public_pem))
    assert line == f"AUTH_JWT_KEY: is a PEM or SSH key, but {alg} needs a shared secret"


@pytest.mark.parametrize("alg", RS_ALGS)
def test_rs_key_that_is_ec(alg: str) -> None:
    line = only_problem(secure_env(alg, AUTH_JWT_KEY=key_pair("ES256").public_pem))
    assert line == f"AUTH_JWT_KEY: is not an RSA key, but AUTH_JWT_ALG={alg} needs one"


@pytest.mark.parametrize("alg", ES_ALGS)
def test_es_key_that_is_rsa(alg: str) -> None:
    line = only_problem({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": key_pair("RS256").public_pem})
    assert line == f"AUTH_JWT_KEY: is not an EC key, but AUTH_JWT_ALG={alg} needs one"


@pytest.mark.parametrize("alg", ES_ALGS)
@pytest.mark.parametrize("wrong", ES_ALGS)
def test_es_key_on_the_wrong_curve(alg: str, wrong: str) -> None:
    env = {"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": key_pair(wrong).public_pem}
    if wrong == alg:
        assert config.load(env).alg == alg
        return
    line = only_problem(env)
    assert (
        line == f"AUTH_JWT_KEY: is a {CURVE_NAMES[wrong]} key, but {alg} needs {CURVE_NAMES[alg]}"
    )


def test_es_key_on_a_curve_outside_jose() -> None:
    public = pem_public(ec.generate_private_key(ec.SECP256K1()))
    line = only_problem({"AUTH_JWT_ALG": "ES256", "AUTH_JWT_KEY": public})
    assert line == "AUTH_JWT_KEY: is a secp256k1 key, but ES256 needs P-256"


@pytest.mark.parametrize("alg", RS_ALGS)
def test_rsa_1024_is_refused(alg: str) -> None:
    line = only_problem({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": pem_public(rsa_1024())})
    assert line == f"AUTH_JWT_KEY: is a 1024-bit RSA key; {alg} needs at least 2048 bits"


@pytest.mark.parametrize("alg", ["RS256", "ES384"])
def test_private_key_as_verify_key_is_refused_with_a_hint(alg: str) -> None:
    line = only_problem({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": key_pair(alg).private_pem})
    assert line.startswith("AUTH_JWT_KEY: holds a private key; give its public key here")
    assert "AUTH_JWT_SIGNING_KEY" in line
    assert "PRIVATE" not in line  # the hint does not echo key material


GARBAGE = {
    "text": "not a key",
    "empty PEM": "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
    "bad body": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    "truncated": "",  # filled in below
    "ed25519": "",
    "certificate header": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
}


def _garbage(name: str, alg: str) -> str:
    if name == "truncated":
        pem = key_pair(alg if alg in RS_ALGS + ES_ALGS else "RS256").public_pem
        return pem[: len(pem) // 2]
    if name == "ed25519":
        return (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    return GARBAGE[name]


@pytest.mark.parametrize("alg", RS_ALGS + ES_ALGS)
@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_pem(alg: str, name: str) -> None:
    line = only_problem({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": _garbage(name, alg)})
    family = "RSA" if alg in RS_ALGS else f"EC {CURVE_NAMES[alg]}"
    assert line == (
        f"AUTH_JWT_KEY: is not a valid key for AUTH_JWT_ALG={alg} or it has invalid format; "
        f"expected an {family} public key in PEM: "
        "-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----"
    )


# ---------------------------------------------------------------------------------------------
# AUTH_JWT_SIGNING_KEY


@pytest.mark.parametrize("alg", RS_ALGS + ES_ALGS)
def test_signing_key_that_pairs(alg: str) -> None:
    cfg = config.load(secure_env(alg))
    assert cfg.signer is not None
    assert cfg.verifier is not None
    assert cfg.verifier.verify({}, b"x.y", cfg.signer.sign(b"x.y"))


@pytest.mark.parametrize("alg", RS_ALGS + ES_ALGS)
def test_rs_es_without_signing_key_loads_with_mint_off(alg: str) -> None:
    env = secure_env(alg, SIDECAR_MINT_SECRET=MINT_SECRET)
    del env["AUTH_JWT_SIGNING_KEY"]
    cfg = config.load(env)
    assert cfg.signer is None
    assert "mint=off" in cfg.describe()


@pytest.mark.parametrize("alg", RS_ALGS + ES_ALGS)
def test_signing_key_that_does_not_pair(alg: str) -> None:
    env = secure_env(alg, AUTH_JWT_SIGNING_KEY=pem_private(other_private(alg)))
    assert only_problem(env) == (
        "AUTH_JWT_SIGNING_KEY: is not the private half of AUTH_JWT_KEY; "
        "Mint's tokens would not verify"
    )


@pytest.mark.parametrize(
    ("alg", "other", "text"),
    [
        ("RS256", "ES256", "is not an RSA key, but AUTH_JWT_ALG=RS256 needs one"),
        ("ES256", "RS256", "is not an EC key, but AUTH_JWT_ALG=ES256 needs one"),
        ("ES256", "ES384", "is a P-384 key, but ES256 needs P-256"),
    ],
)
def test_signing_key_of_the_wrong_kind(alg: str, other: str, text: str) -> None:
    line = only_problem(secure_env(alg, AUTH_JWT_SIGNING_KEY=key_pair(other).private_pem))
    assert line == f"AUTH_JWT_SIGNING_KEY: {text}"


@pytest.mark.parametrize("alg", ["RS256", "ES512"])
@pytest.mark.parametrize(
    "material",
    ["garbage", "public", "encrypted", "ed25519"],
)
def test_signing_key_garbage(alg: str, material: str) -> None:
    value = {
        "garbage": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "public": key_pair(alg).public_pem,
        "encrypted": pem_private(
            serialization.load_pem_private_key(key_pair(alg).private_pem.encode(), None),
            password=b"pw",
        ),
        "ed25519": pem_private(ed25519.Ed25519PrivateKey.generate()),
    }[material]
    line = only_problem(secure_env(alg, AUTH_JWT_SIGNING_KEY=value))
    assert line.startswith(
        f"AUTH_JWT_SIGNING_KEY: is not a valid key for AUTH_JWT_ALG={alg} or it has invalid format"
    )
    assert "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----" in line


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_signing_key_with_hs_is_refused(alg: str) -> None:
    env = hs_env(alg, HS_SECRET, AUTH_JWT_SIGNING_KEY=key_pair("RS256").private_pem)
    assert only_problem(env) == (
        f"AUTH_JWT_SIGNING_KEY: is not used with {alg}: Mint signs with AUTH_JWT_KEY"
    )


def test_signing_key_is_not_checked_against_a_bad_verify_key() -> None:
    env = secure_env("RS256", AUTH_JWT_KEY="garbage")
    assert [line.split(":")[0] for line in problems(env)] == ["AUTH_JWT_KEY"]


# ---------------------------------------------------------------------------------------------
# SIDECAR_MINT_SECRET


def test_mint_secret() -> None:
    cfg = config.load(secure_env("HS256", SIDECAR_MINT_SECRET="x" * 32))
    assert cfg.mint_secret == b"x" * 32
    assert "mint=on" in cfg.describe()
    assert only_problem(secure_env("HS256", SIDECAR_MINT_SECRET="x" * 31)) == (
        "SIDECAR_MINT_SECRET: must be at least 32 bytes long"
    )


# ---------------------------------------------------------------------------------------------
# *_FILE variants


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(HS_SECRET + "\n")
    cfg = config.load({"AUTH_JWT_ALG": "HS512", "AUTH_JWT_KEY_FILE": str(path)})
    assert accepts(cfg, hs_token("HS512", HS_SECRET))
    assert not accepts(cfg, hs_token("HS512", HS_SECRET + "\n"))


def test_key_file_with_crlf(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(HS_SECRET.encode() + b"\r\n")
    cfg = config.load({"AUTH_JWT_ALG": "HS512", "AUTH_JWT_KEY_FILE": str(path)})
    assert accepts(cfg, hs_token("HS512", HS_SECRET))


def test_key_file_keeps_inner_and_leading_whitespace(tmp_path: Path) -> None:
    secret = "  " + "k" * 30 + "\n" + "k" * 30
    path = tmp_path / "key"
    path.write_text(secret + "\n")
    cfg = config.load({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(path)})
    assert accepts(cfg, hs_token("HS256", secret))


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_pem_files(tmp_path: Path, alg: str) -> None:
    public, private = tmp_path / "public.pem", tmp_path / "private.pem"
    public.write_text(key_pair(alg).public_pem)
    private.write_text(key_pair(alg).private_pem)
    cfg = config.load(
        {
            "AUTH_JWT_ALG": alg,
            "AUTH_JWT_KEY_FILE": str(public),
            "AUTH_JWT_SIGNING_KEY_FILE": str(private),
        }
    )
    assert cfg.signer is not None
    now = int(time.time())
    assert accepts(cfg, sign(alg, {"sub": "alice", "iat": now, "exp": now + 60}))


def test_mint_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "mint"
    path.write_text(MINT_SECRET + "\n")
    cfg = config.load(secure_env("HS256", SIDECAR_MINT_SECRET_FILE=str(path)))
    assert cfg.mint_secret == MINT_SECRET.encode()


@pytest.mark.parametrize("name", ["AUTH_JWT_KEY", "AUTH_JWT_SIGNING_KEY", "SIDECAR_MINT_SECRET"])
def test_value_and_file_both_set(tmp_path: Path, name: str) -> None:
    path = tmp_path / "secret"
    alg = "HS256" if name == "AUTH_JWT_KEY" else "RS256"
    env = secure_env(alg, SIDECAR_MINT_SECRET=MINT_SECRET)
    path.write_text(env.get(name, MINT_SECRET))
    env[name + "_FILE"] = str(path)
    # Exactly one line: "both set" is the whole problem, not also a missing key.
    assert only_problem(env) == f"{name}: is set together with {name}_FILE; set only one"


@pytest.mark.parametrize("name", ["AUTH_JWT_KEY", "AUTH_JWT_SIGNING_KEY", "SIDECAR_MINT_SECRET"])
def test_unreadable_file(tmp_path: Path, name: str) -> None:
    env = secure_env("RS256", SIDECAR_MINT_SECRET=MINT_SECRET)
    env.pop(name, None)
    missing = tmp_path / "nope"
    env[name + "_FILE"] = str(missing)
    assert only_problem(env) == (f"{name}_FILE: cannot read {missing}: No such file or directory")


def test_file_that_is_a_directory(tmp_path: Path) -> None:
    line = only_problem({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(tmp_path)})
    assert line.startswith(f"AUTH_JWT_KEY_FILE: cannot read {tmp_path}: ")
    assert "directory" in line.lower()


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe" + os.urandom(64))
    line = only_problem({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(path)})
    assert line == f"AUTH_JWT_KEY_FILE: cannot read {path}: not UTF-8 text"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_file_without_permission(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(HS_SECRET)
    path.chmod(0)
    line = only_problem({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(path)})
    assert line == f"AUTH_JWT_KEY_FILE: cannot read {path}: Permission denied"


@pytest.mark.parametrize(
    ("alg", "name"),
    [
        ("HS256", "AUTH_JWT_KEY"),
        ("RS256", "AUTH_JWT_KEY"),
        ("RS256", "AUTH_JWT_SIGNING_KEY"),
        ("HS256", "SIDECAR_MINT_SECRET"),
    ],
)
def test_env_secret_with_undecodable_bytes(alg: str, name: str) -> None:
    """os.environ hands undecodable bytes over as surrogates: a problem line, not a crash."""
    value = os.fsdecode(b"\xff\xfe" + b"k" * 64)
    env = {**secure_env(alg, SIDECAR_MINT_SECRET=MINT_SECRET), name: value}
    assert only_problem(env) == f"{name}: is not UTF-8 text"


def test_empty_key_file_is_a_too_short_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("\n")
    line = only_problem({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(path)})
    assert line == "AUTH_JWT_KEY: The 'key' needs to be at least 32 bytes long for HS256"


# ---------------------------------------------------------------------------------------------
# Insecure mode refuses secure-only settings (Electric's safety net)


@pytest.mark.parametrize("name", SECURE_ONLY)
def test_insecure_refuses_every_secure_only_variable(name: str) -> None:
    line = only_problem({"AUTH_MODE": "insecure", name: "something"})
    assert line.startswith(f"{name}: ")
    assert line.endswith(FORGOT)


def test_secure_only_list_covers_the_secure_settings() -> None:
    assert set(SECURE_ONLY) == {
        "AUTH_JWT_ALG",
        "AUTH_JWT_KEY",
        "AUTH_JWT_KEY_FILE",
        "AUTH_JWT_JWKS_FILE",
        "AUTH_JWT_JWKS_URL",
        "AUTH_JWT_OIDC_ISSUER",
        "AUTH_JWT_ISS",
        "AUTH_JWT_AUD",
        "AUTH_JWT_SIGNING_KEY",
        "AUTH_JWT_SIGNING_KEY_FILE",
        "SIDECAR_MINT_SECRET",
        "SIDECAR_MINT_SECRET_FILE",
        "SIDECAR_INTROSPECTION_URL",
        "SIDECAR_INTROSPECTION_CLIENT_ID",
        "SIDECAR_INTROSPECTION_CLIENT_SECRET",
        "SIDECAR_INTROSPECTION_CLIENT_SECRET_FILE",
        "SIDECAR_INTROSPECTION_EVERY_TOKEN",
        "SIDECAR_ADMIN_SECRET",
        "SIDECAR_ADMIN_SECRET_FILE",
    }


def test_insecure_refuses_all_of_them_at_once() -> None:
    env = {"AUTH_MODE": "insecure", **{name: "x" for name in SECURE_ONLY}}
    lines = problems(env)
    assert [line.split(":")[0] for line in lines] == list(SECURE_ONLY)
    assert all(line.endswith(FORGOT) for line in lines)


def test_insecure_accepts_the_namespace_and_sidecar_settings() -> None:
    cfg = config.load(
        {
            "AUTH_MODE": "insecure",
            "AUTH_JWT_NAMESPACE": "ns",
            "SIDECAR_LISTEN": "unix:/tmp/s.sock",
            "SIDECAR_CLOCK_SKEW_SECONDS": "0",
        }
    )
    assert (cfg.namespace, cfg.listen, cfg.clock_skew) == ("ns", "unix:/tmp/s.sock", 0)


def test_insecure_does_not_read_file_variables(tmp_path: Path) -> None:
    line = only_problem({"AUTH_MODE": "insecure", "AUTH_JWT_KEY_FILE": str(tmp_path / "nope")})
    assert line.startswith("AUTH_JWT_KEY_FILE: is set, but AUTH_MODE=insecure does not use it.")


# ---------------------------------------------------------------------------------------------
# AUTH_MODE, SIDECAR_LISTEN, numbers, log level


@pytest.mark.parametrize("mode", ["dev", "Secure", "INSECURE", "true", " secure"])
def test_bad_mode(mode: str) -> None:
    lines = problems({**secure_env("HS256"), "AUTH_MODE": mode})
    assert lines == [f'AUTH_MODE: must be "secure" or "insecure", not "{mode}"']


def test_bad_mode_alone_gives_one_line_not_secure_mode_lines_too() -> None:
    assert problems({"AUTH_MODE": "dev"}) == [
        'AUTH_MODE: must be "secure" or "insecure", not "dev"'
    ]


@pytest.mark.parametrize("raw", ["1_000", " 5", "5 ", "\u0665", "+5", "0x10"])
def test_numbers_are_plain_ascii_digits(raw: str) -> None:
    lines = problems({**secure_env("HS256"), "SIDECAR_GRACE_SECONDS": raw})
    assert lines == [f'SIDECAR_GRACE_SECONDS: must be a whole number from 0 to 3600, not "{raw}"']


@pytest.mark.parametrize("listen", ["127.0.0.1:\u0665", "127.0.0.1:5_0"])
def test_listen_port_is_plain_ascii_digits(listen: str) -> None:
    assert problems({**secure_env("HS256"), "SIDECAR_LISTEN": listen})[0].startswith(
        "SIDECAR_LISTEN: must be host:port"
    )


@pytest.mark.parametrize(
    "listen",
    [
        "127.0.0.1:50051",
        "0.0.0.0:0",
        "localhost:65535",
        "[::1]:50051",
        "[::]:1",
        "unix:/run/auth-sidecar.sock",
        "unix:relative.sock",
    ],
)
def test_good_listen(listen: str) -> None:
    assert config.load({"AUTH_MODE": "insecure", "SIDECAR_LISTEN": listen}).listen == listen


@pytest.mark.parametrize(
    "listen", ["localhost", "localhost:", ":50051", "host:65536", "host:port", "host:-1", "unix:"]
)
def test_bad_listen(listen: str) -> None:
    line = only_problem({"AUTH_MODE": "insecure", "SIDECAR_LISTEN": listen})
    assert line.startswith("SIDECAR_LISTEN: ")
    if listen != "unix:":
        assert line == (
            f'SIDECAR_LISTEN: must be host:port, [v6]:port or unix:/path, not "{listen}"'
        )


INT_RANGES = {
    "SIDECAR_CLOCK_SKEW_SECONDS": (0, 3600),
    "SIDECAR_MAX_TOKEN_BYTES": (64, 1 << 20),
    "SIDECAR_MINT_MAX_TTL_SECONDS": (1, 366 * 86400),
    "SIDECAR_MAX_CONCURRENT_RPCS": (1, 1_000_000),
    "SIDECAR_GRACE_SECONDS": (0, 3600),
    "SIDECAR_CACHE_SIZE": (0, 10_000_000),
    "SIDECAR_CACHE_MAX_TTL_SECONDS": (1, 86400),
    "SIDECAR_WORKERS": (1, 1024),
}
_FIELD = {
    "SIDECAR_CLOCK_SKEW_SECONDS": "clock_skew",
    "SIDECAR_MAX_TOKEN_BYTES": "max_token_bytes",
    "SIDECAR_MINT_MAX_TTL_SECONDS": "mint_max_ttl",
    "SIDECAR_MAX_CONCURRENT_RPCS": "max_concurrent_rpcs",
    "SIDECAR_GRACE_SECONDS": "grace_seconds",
    "SIDECAR_CACHE_SIZE": "cache_size",
    "SIDECAR_WORKERS": "workers",
    "SIDECAR_CACHE_MAX_TTL_SECONDS": "cache_max_ttl",
}


@pytest.mark.parametrize("name", INT_RANGES)
def test_int_ranges(name: str) -> None:
    low, high = INT_RANGES[name]
    for good in (low, high):
        cfg = config.load({"AUTH_MODE": "insecure", name: str(good)})
        assert getattr(cfg, _FIELD[name]) == good
    for bad in (str(low - 1), str(high + 1), "abc", "1.5", "1e3", "0x10"):
        line = only_problem({"AUTH_MODE": "insecure", name: bad})
        assert line == f'{name}: must be a whole number from {low} to {high}, not "{bad}"'


def test_workers_default_to_the_usable_cpus() -> None:
    usable = len(os.sched_getaffinity(0))
    assert config.load({"AUTH_MODE": "insecure"}).workers == usable
    assert config.load({"AUTH_MODE": "insecure", "SIDECAR_WORKERS": "auto"}).workers == usable


def test_log_level() -> None:
    assert config.load({"AUTH_MODE": "insecure", "SIDECAR_LOG_LEVEL": "DEBUG"}).log_level == (
        "debug"
    )
    assert only_problem({"AUTH_MODE": "insecure", "SIDECAR_LOG_LEVEL": "verbose"}) == (
        'SIDECAR_LOG_LEVEL: must be one of debug, info, warning, error, not "verbose"'
    )


def test_several_problems_give_one_line_each() -> None:
    lines = problems(
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "XX999",
            "SIDECAR_LISTEN": "nowhere",
            "SIDECAR_CLOCK_SKEW_SECONDS": "-5",
            "SIDECAR_MAX_TOKEN_BYTES": "lots",
            "SIDECAR_MINT_SECRET": "short",
        }
    )
    assert sorted(line.split(":")[0] for line in lines) == sorted(
        [
            "AUTH_JWT_ALG",
            "AUTH_JWT_KEY",
            "SIDECAR_LISTEN",
            "SIDECAR_CLOCK_SKEW_SECONDS",
            "SIDECAR_MAX_TOKEN_BYTES",
            "SIDECAR_MINT_SECRET",
        ]
    )
    assert all("\n" not in line for line in lines)


def test_every_problem_line_names_its_variable() -> None:
    names = {s.env for s in SETTINGS}
    cases: list[dict[str, str]] = [
        {},
        {"AUTH_MODE": "x"},
        {"AUTH_MODE": "insecure", **{n: "1" for n in SECURE_ONLY}},
        {"AUTH_MODE": "insecure", "SIDECAR_LISTEN": "x", "SIDECAR_LOG_LEVEL": "x"},
        {**secure_env("RS256"), "AUTH_JWT_SIGNING_KEY": "x", "SIDECAR_MINT_SECRET": "x"},
        {**secure_env("ES256"), "AUTH_JWT_KEY": "x", "SIDECAR_GRACE_SECONDS": "x"},
    ]
    for env in cases:
        for line in problems(env):
            name, sep, text = line.partition(": ")
            assert sep and text, line
            assert name in names, line


# ---------------------------------------------------------------------------------------------
# Flags, and empty values


def test_flags_override_env() -> None:
    env = {"AUTH_MODE": "secure", "SIDECAR_LISTEN": "127.0.0.1:1", "AUTH_JWT_NAMESPACE": "env"}
    cfg = config.load(
        env,
        flags={"AUTH_MODE": "insecure", "SIDECAR_LISTEN": "unix:/x", "AUTH_JWT_NAMESPACE": "flag"},
    )
    assert (cfg.mode, cfg.listen, cfg.namespace) == ("insecure", "unix:/x", "flag")


def test_unset_flags_fall_back_to_env() -> None:
    cfg = config.load(
        {"AUTH_MODE": "insecure", "SIDECAR_CLOCK_SKEW_SECONDS": "7"},
        flags={s.env: None for s in SETTINGS},
    )
    assert (cfg.mode, cfg.clock_skew) == ("insecure", 7)


def test_flags_alone_configure_secure_mode() -> None:
    cfg = config.load({}, flags={"AUTH_JWT_ALG": "HS384", "AUTH_JWT_KEY": HS_SECRET})
    assert (cfg.mode, cfg.alg) == ("secure", "HS384")


def test_flag_problems_name_the_variable() -> None:
    assert only_problem(
        {"AUTH_MODE": "insecure"}, flags={"SIDECAR_CLOCK_SKEW_SECONDS": "-1"}
    ).startswith("SIDECAR_CLOCK_SKEW_SECONDS: ")


def test_empty_string_counts_as_unset() -> None:
    # As Compose passes `VAR:` with no value: insecure mode does not trip over empty secure vars.
    env = {"AUTH_MODE": "insecure", **{name: "" for name in SECURE_ONLY}}
    env.update({s.env: "" for s in SETTINGS if s.env not in SECURE_ONLY and s.env != "AUTH_MODE"})
    cfg = config.load(env)
    assert cfg == config.load({"AUTH_MODE": "insecure"})
    secure = config.load({"AUTH_MODE": "", **secure_env("HS256"), "AUTH_JWT_ISS": ""})
    assert (secure.mode, secure.iss, secure.policy.required) == ("secure", None, ("iat", "exp"))
    assert only_problem({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": ""}) == KEY_PROBLEM


# ---------------------------------------------------------------------------------------------
# Secrets stay out of repr, describe() and problem lines


def _secret_env(alg: str) -> dict[str, str]:
    return secure_env(alg, SIDECAR_MINT_SECRET=MINT_SECRET, AUTH_JWT_ISS="iss-x")


def _fragments(env: dict[str, str]) -> list[str]:
    """Recognisable pieces of every secret in `env`."""
    out = [MINT_SECRET]
    for name in ("AUTH_JWT_KEY", "AUTH_JWT_SIGNING_KEY"):
        value = env.get(name)
        if value:
            body = "".join(line for line in value.splitlines() if "-----" not in line)
            out.append(body[10:40] if body else value)
    return out


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_repr_and_describe_never_show_secrets(alg: str) -> None:
    env = _secret_env(alg)
    cfg = config.load(env)
    shown = [repr(cfg), str(cfg), cfg.describe()]
    for text in shown:
        for fragment in _fragments(env):
            assert fragment not in text
        assert "verify_key" not in text
        assert "signing_key" not in text
        assert "mint_secret" not in text
        assert "PRIVATE" not in text
    assert cfg.describe() == (
        f"mode=secure alg={alg} listen=127.0.0.1:50051 transport=plaintext namespace=- "
        "iss=iss-x aud=- mint=on"
    )


def test_describe_insecure() -> None:
    cfg = config.load({"AUTH_MODE": "insecure", "AUTH_JWT_NAMESPACE": "ns"})
    assert cfg.describe() == "mode=insecure listen=127.0.0.1:50051 transport=plaintext namespace=ns"


def test_problem_lines_never_show_secrets() -> None:
    short = "tiny-secret-value"
    text = "\n".join(
        problems(
            {
                "AUTH_JWT_ALG": "HS256",
                "AUTH_JWT_KEY": short,
                "SIDECAR_MINT_SECRET": "short-mint-secret",
            }
        )
    )
    assert short not in text
    assert "short-mint-secret" not in text
    bad_pem = key_pair("RS256").private_pem
    text = "\n".join(problems({"AUTH_JWT_ALG": "RS256", "AUTH_JWT_KEY": bad_pem}))
    assert _fragments({"AUTH_JWT_KEY": bad_pem})[1] not in text


# ---------------------------------------------------------------------------------------------
# The table: every setting's parser, target, default and subcommands are declared in its row


def test_every_default_is_the_table_row_parsed() -> None:
    cfg = config.load(secure_env("HS256"))
    defaulted = [s for s in SETTINGS if s.field and s.default is not None and s.parse]
    assert len(defaulted) >= 10
    for setting in defaulted:
        assert setting.field is not None and setting.parse is not None
        assert setting.default is not None
        target: object = cfg
        for name in setting.field.split("."):
            target = getattr(target, name)
        assert target == setting.parse(setting.default), setting.env


def test_every_target_is_a_config_field_and_every_field_has_a_source() -> None:
    names = {f.name for f in dataclasses.fields(Config)}
    envoy = {f.name for f in dataclasses.fields(config.EnvoyConfig)}
    targets = [s.field for s in SETTINGS if s.field]
    assert len(set(targets)) == len(targets)
    top = {t for t in targets if "." not in t}
    nested = {t.removeprefix("envoy.") for t in targets if t.startswith("envoy.")}
    fetch = {t.removeprefix("fetch.") for t in targets if t.startswith("fetch.")}
    # The key rules give verifier, signer, alg, remote and warnings; the loader the files it
    # read; SIDECAR_CONFIG_FILE the issuers; the TLS files' rule tls; envoy and fetch are groups.
    # SIDECAR_CONFIG_FILE's [[routes]] the routes.
    derived = {"verifier", "signer", "alg", "remote", "warnings", "files", "issuers", "tls"}
    derived.add("routes")
    derived.add("introspection")  # the introspection rule joins SIDECAR_INTROSPECTION_*
    derived.add("revocation")  # the store rule joins SIDECAR_REVOCATION_* and SIDECAR_STATE_DIR
    assert top | derived | {"envoy", "fetch"} == names
    assert nested == envoy
    assert fetch == {f.name for f in dataclasses.fields(FetchSettings)}


def test_every_setting_is_offered_to_serve_and_only_known_commands() -> None:
    for setting in SETTINGS:
        assert config.SERVE in setting.commands, setting.env
        known = {config.SERVE, config.MINT, config.VALIDATE, config.REVOKE}
        assert setting.commands <= known, setting.env
    # A *_FILE row offers its flag wherever its secret's row does.
    by_env = {s.env: s for s in SETTINGS}
    for setting in SETTINGS:
        if setting.parse is None:
            secret = by_env[setting.env.removesuffix("_FILE")]
            assert secret.secret and secret.commands == setting.commands
            assert secret.secure_only == setting.secure_only


def test_mode_is_an_enum() -> None:
    assert config.load({"AUTH_MODE": "insecure"}).mode is Mode.INSECURE
    assert config.load(secure_env("HS256")).mode is Mode.SECURE


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where uvloop cannot be installed (it is a dependency only where libuv builds)."""
    monkeypatch.setattr(parsers, "has_uvloop", lambda: False)
    assert eventloop.runner(config.load({"AUTH_MODE": "insecure"}).event_loop) is asyncio.run
    with pytest.raises(ConfigError) as raised:
        config.load({"AUTH_MODE": "insecure", "SIDECAR_EVENT_LOOP": "uvloop"})
    assert raised.value.problems == ["SIDECAR_EVENT_LOOP: uvloop is not installed"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIDECAR_JWT_TYP", "at jwt"),
        ("SIDECAR_JWT_TYP", ","),
        ("SIDECAR_JWT_TYP", "at+jwt;q=1"),
        ("SIDECAR_JWT_MAX_LIFETIME_SECONDS", "0"),
        ("SIDECAR_JWT_MAX_LIFETIME_SECONDS", "1h"),
    ],
)
def test_bad_profile_settings_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        config.load({"AUTH_MODE": "insecure", name: value})
    (line,) = str(error.value).splitlines()
    assert line.startswith(f"{name}: must be")


def test_typ_values_are_kept_as_rfc_7515_compares_them() -> None:
    cfg = config.load({"AUTH_MODE": "insecure", "SIDECAR_JWT_TYP": "at+JWT, application/JWT"})
    assert cfg.policy.typ == frozenset({"application/at+jwt", "application/jwt"})
