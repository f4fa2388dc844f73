"""Several issuers from SIDECAR_CONFIG_FILE: loading, routing by `iss`, and Mint's issuer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm
from support import HS_SECRET, key_pair, signing_material, unsigned

from sidecar import config
from sidecar.config import decider
from sidecar.core.errors import ConfigError, Reason
from sidecar.core.routing import IssuerRouter

EXAMPLE = Path(__file__).parent.parent / "examples" / "issuers.toml"
SECURE = {"AUTH_MODE": "secure"}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        config.load(env)
    return raised.value.problems


def token(alg: str, iss: str | None, kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 60, **claims}
    if iss is not None:
        payload["iss"] = iss
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, signing_material(alg), algorithm=alg, headers=headers)


@pytest.fixture
def two_issuers(tmp_path: Path) -> dict[str, str]:
    """`https://a` trusts RS256 keys from a JWKS file; `https://b` an HS256 secret; b mints."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key(key_pair("RS256").public_pem.encode())
    jwk = {**json.loads(RSAAlgorithm.to_jwk(public)), "kid": "a-1"}  # type: ignore[arg-type]
    (tmp_path / "a.json").write_text(json.dumps({"keys": [jwk]}))
    (tmp_path / "b.key").write_text(HS_SECRET)
    (tmp_path / "issuers.toml").write_text(
        f"""
[[issuers]]
iss = "https://a"
alg = "RS256"
jwks_file = "{tmp_path / "a.json"}"
aud = "api"

[[issuers]]
iss = "https://b"
alg = "HS256"
key_file = "{tmp_path / "b.key"}"
namespace = "ns"
mint = true
"""
    )
    return {**SECURE, "SIDECAR_CONFIG_FILE": str(tmp_path / "issuers.toml")}


def test_tokens_go_to_their_issuer(two_issuers: dict[str, str]) -> None:
    cfg = config.load(two_issuers)
    assert [c.iss for c in cfg.issuers] == ["https://a", "https://b"]
    assert "issuers=https://a,https://b" in cfg.describe()
    router = decider(cfg)
    assert isinstance(router, IssuerRouter)
    a = router.decide(token("RS256", "https://a", "a-1", aud="api"))
    assert (a.valid, a.user_id) == (True, "alice")
    b = router.decide(token("HS256", "https://b", ns={"user_id": "bob"}))
    assert (b.valid, b.user_id) == (True, "bob")
    # Each issuer's own rules: a needs aud, b reads the user from its namespace.
    assert router.decide(token("RS256", "https://a", "a-1")).reason == Reason.MISSING_CLAIM
    assert router.decide(token("HS256", "https://b")).reason == Reason.INVALID_USER_ID
    # A token of b that claims to be a's: a's rules and keys apply, and refuse it.
    assert router.decide(token("HS256", "https://a", aud="api")).reason == (
        Reason.ALGORITHM_MISMATCH
    )


def test_a_route_may_leave_out_the_issuers_audience(two_issuers: dict[str, str]) -> None:
    router = decider(config.load(two_issuers))
    other = token("RS256", "https://a", "a-1", aud="admin-api")
    assert router.decide(other).reason == Reason.INVALID_CLAIM
    # A route with its own `audience` checks that instead (core/rules.py).
    assert router.decide(other, issuer_audience=False).valid


@pytest.mark.parametrize(
    ("iss", "reason", "message"),
    [
        ("https://c", Reason.INVALID_CLAIM, 'Invalid "iss" claim value: "https://c"'),
        (7, Reason.INVALID_CLAIM, 'Invalid "iss" claim value: 7'),
        (None, Reason.MISSING_CLAIM, 'Missing required "iss" claim'),
    ],
)
def test_an_unknown_issuer_is_refused_before_any_crypto(
    two_issuers: dict[str, str], iss: Any, reason: Reason, message: str
) -> None:
    router = decider(config.load(two_issuers))
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "x", "iat": now, "exp": now + 60}
    if iss is not None:
        claims["iss"] = iss
    # The signature is garbage: a crypto check would say BAD_SIGNATURE, not this.
    decision = router.decide(unsigned(claims, {"alg": "HS256"}, "AAAA"))
    assert (decision.reason, decision.message) == (reason, message)
    assert router.decide("not a token").reason == Reason.MALFORMED


def test_mint_signs_as_the_marked_issuer(two_issuers: dict[str, str]) -> None:
    cfg = config.load({**two_issuers, "SIDECAR_MINT_SECRET": "m" * 40})
    minted = config.build_minter(cfg).mint("carol").token
    assert jwt.decode(minted, options={"verify_signature": False})["iss"] == "https://b"
    decision = decider(cfg).decide(minted)
    assert (decision.valid, decision.user_id) == (True, "carol")


def test_without_a_mint_table_mint_is_off(two_issuers: dict[str, str]) -> None:
    path = Path(two_issuers["SIDECAR_CONFIG_FILE"])
    path.write_text(path.read_text().replace("mint = true", ""))
    cfg = config.load(two_issuers)
    assert cfg.signer is None


@pytest.mark.parametrize(
    "name", ["AUTH_JWT_KEY", "AUTH_JWT_JWKS_URL", "AUTH_JWT_ALG", "AUTH_JWT_ISS"]
)
def test_issuer_settings_in_both_file_and_environment(
    two_issuers: dict[str, str], name: str
) -> None:
    assert problems({**two_issuers, name: "x"}) == [
        f"{name}: is set together with SIDECAR_CONFIG_FILE; set it in an [[issuers]] table instead"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[issuers]\n", "is not valid TOML"),
        ("issuers = 3", "issuers must be [[issuers]] tables"),
        ("", "needs [[issuers]] or [[routes]] tables"),
        (
            'x = 1\n[[issuers]]\niss = "a"\nkey = "' + HS_SECRET + '"\nalg = "HS256"',
            "unknown key 'x'",
        ),
        ('[[issuers]]\nkey = "' + HS_SECRET + '"\nalg = "HS256"', "#1: needs iss"),
        (
            '[[issuers]]\niss = "a"\nkey = "' + HS_SECRET + '"\nalg = "HS256"\nport = "1"',
            "#1: unknown key 'port' (known: alg, key,",
        ),
        (
            '[[issuers]]\niss = "a"\nalg = 256\nkey = "' + HS_SECRET + '"',
            "#1: alg must be a string",
        ),
        (
            '[[issuers]]\niss = "a"\nalg = "HS256"\nkey = "short"',
            "issuer 'a': key: The 'key' needs to be at least 32 bytes long for HS256",
        ),
        (
            '[[issuers]]\niss = "a"\nalg = "HS256"\nkey = "'
            + HS_SECRET
            + '"\n[[issuers]]\niss = "a"\nalg = "HS256"\nkey = "'
            + HS_SECRET
            + '"',
            "#2: iss 'a' is already the iss of another table",
        ),
        (
            '[[issuers]]\niss = "a"\nalg = "HS256"\nkey = "'
            + HS_SECRET
            + '"\nmint = true\n[[issuers]]\niss = "b"\nalg = "HS256"\nkey = "'
            + HS_SECRET
            + '"\nmint = true',
            "issuer 'b': mint = true is already set on issuer 'a'",
        ),
    ],
)
def test_file_problems_name_the_file_and_the_issuer(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "issuers.toml"
    path.write_text(text)
    lines = problems({**SECURE, "SIDECAR_CONFIG_FILE": str(path)})
    assert any(line.startswith("SIDECAR_CONFIG_FILE: ") and expected in line for line in lines), (
        lines
    )


def test_a_shared_setting_problem_is_said_once(two_issuers: dict[str, str]) -> None:
    lines = problems({**two_issuers, "SIDECAR_LISTEN": "nowhere"})
    assert lines == ['SIDECAR_LISTEN: must be host:port, [v6]:port or unix:/path, not "nowhere"']


def test_insecure_mode_refuses_the_file(two_issuers: dict[str, str]) -> None:
    (line,) = problems({**two_issuers, "AUTH_MODE": "insecure"})
    assert line.startswith("SIDECAR_CONFIG_FILE: is set, but AUTH_MODE=insecure")


def test_the_example_file_loads(tmp_path: Path) -> None:
    """examples/issuers.toml, with its secret files made real."""
    (tmp_path / "pub.pem").write_text(key_pair("ES256").public_pem)
    (tmp_path / "key.pem").write_text(key_pair("ES256").private_pem)
    text = EXAMPLE.read_text()
    text = text.replace("/run/secrets/sync-es256.pub.pem", str(tmp_path / "pub.pem"))
    text = text.replace("/run/secrets/sync-es256.key.pem", str(tmp_path / "key.pem"))
    (tmp_path / "issuers.toml").write_text(text)
    cfg = config.load({**SECURE, "SIDECAR_CONFIG_FILE": str(tmp_path / "issuers.toml")})
    assert [c.iss for c in cfg.issuers] == [
        "https://sso.example.com/realms/app",
        "https://example.eu.auth0.com/",
        "https://sync.example.com",
    ]
    assert cfg.iss == "https://sync.example.com"
    assert cfg.signer is not None
    assert [c.remote.url if c.remote else None for c in cfg.issuers] == [
        "https://sso.example.com/realms/app",
        "https://example.eu.auth0.com/.well-known/jwks.json",
        None,
    ]


def test_each_issuer_has_its_own_typ_and_lifetime(
    two_issuers: dict[str, str], tmp_path: Path
) -> None:
    path = Path(two_issuers["SIDECAR_CONFIG_FILE"])
    text = path.read_text().replace(
        'aud = "api"\n', 'aud = "api"\ntyp = "at+jwt"\nmax_lifetime_seconds = 300\n'
    )
    path.write_text(text)
    router = decider(config.load(two_issuers))
    typed = jwt.encode(
        {
            "sub": "alice",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "iss": "https://a",
            "aud": "api",
        },
        signing_material("RS256"),
        algorithm="RS256",
        headers={"kid": "a-1", "typ": "at+jwt"},
    )
    assert router.decide(typed).valid
    plain = token("RS256", "https://a", "a-1", aud="api")  # typ JWT, as PyJWT writes it
    assert router.decide(plain).message == 'Invalid "typ" header value: "JWT"'
    long_lived = token("RS256", "https://a", "a-1", aud="api", exp=int(time.time()) + 3600)
    assert router.decide(long_lived).reason == Reason.INVALID_CLAIM
    # b has neither: Electric's semantics.
    assert router.decide(
        token("HS256", "https://b", ns={"user_id": "bob"}, exp=int(time.time()) + 3600)
    ).valid


def test_a_lifetime_in_a_table_is_a_whole_number(two_issuers: dict[str, str]) -> None:
    path = Path(two_issuers["SIDECAR_CONFIG_FILE"])
    path.write_text(
        path.read_text().replace('aud = "api"\n', 'aud = "api"\nmax_lifetime_seconds = -5\n')
    )
    (line,) = problems(two_issuers)
    assert line.startswith("SIDECAR_CONFIG_FILE: issuer 'https://a': max_lifetime_seconds: must be")
