"""Writes tests/vectors/vectors.json: shared conformance vectors for every client.

    .venv/bin/python tests/vectors/generate.py

Each vector is a sidecar configuration, a token and the decision every client must get from a
live sidecar; `*_FILE` paths are relative to the repository root. Tokens are signed with PyJWT
from the fixed keys in tests/keys/ (made once, by this script, if missing) and carry fixed times
far from today, so the file never goes stale. Expected decisions are written by hand per case,
never computed by the sidecar. ES signatures are randomised, so rerunning changes the tokens;
commit the result only when the cases change.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authsidecar.v1.reason import Reason
from sidecar.keys.algorithms import ES_CURVES

ROOT = Path(__file__).resolve().parents[2]
KEYS = ROOT / "tests" / "keys"
OUT = ROOT / "tests" / "vectors" / "vectors.json"

PAST = 1_000_000_000  # 2001
IAT = 1_700_000_000  # 2023
FUTURE = 4_102_444_800  # 2100
FAR_FUTURE_IAT = 4_838_572_800  # 2123: an iat "from the future" is invalid
NS = "https://electric-sql.com/jwt/claims"
ISS = "https://auth.example"
AUD = "sync"

VALID = {"valid": True, "reason": Reason.UNSPECIFIED.wire, "message": ""}


def refused(reason: Reason, message: str) -> dict[str, Any]:
    return {"valid": False, "user_id": "", "reason": reason.wire, "message": message}


MALFORMED = refused(Reason.MALFORMED, "Invalid token")
MISMATCH = refused(Reason.ALGORITHM_MISMATCH, "Signing algorithm mismatch")
BAD_SIGNATURE = refused(Reason.BAD_SIGNATURE, "Invalid token signature")
EXPIRED = refused(Reason.EXPIRED, "Expired token")
NOT_YET_VALID = refused(Reason.NOT_YET_VALID, "Token is not yet valid")
BAD_USER = refused(Reason.INVALID_USER_ID, "Missing or invalid 'user_id'")


def missing(claim: str) -> dict[str, Any]:
    return refused(Reason.MISSING_CLAIM, f'Missing required "{claim}" claim')


def invalid(claim: str, shown: str) -> dict[str, Any]:
    return refused(Reason.INVALID_CLAIM, f'Invalid "{claim}" claim value: {shown}')


def key_files(alg: str) -> tuple[Path, Path]:
    """(private, public) PEM files for an RS or ES algorithm; made once, then kept."""
    name = "rs" if alg.startswith("RS") else alg.lower()
    private, public = KEYS / f"{name}.key.pem", KEYS / f"{name}.pub.pem"
    if not private.exists():
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg.startswith("RS")
            else ec.generate_private_key(ES_CURVES[alg].curve)
        )
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return private, public


def hs_file() -> Path:
    path = KEYS / "hs.key"
    if not path.exists():
        path.write_text("conformance-vectors-hmac-secret-" + "0123456789abcdef" * 2)  # 64 bytes
    return path


def config_env(alg: str | None, **extra: str) -> dict[str, str]:
    if alg is None:
        return {"AUTH_MODE": "insecure", **extra}
    key = hs_file() if alg.startswith("HS") else key_files(alg)[1]
    return {
        "AUTH_MODE": "secure",
        "AUTH_JWT_ALG": alg,
        "AUTH_JWT_KEY_FILE": str(key.relative_to(ROOT)),
        **extra,
    }


def signer(alg: str) -> Any:
    if alg.startswith("HS"):
        return hs_file().read_text()
    return key_files(alg)[0].read_text()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def other_alg(alg: str) -> str:
    return {"HS": "HS512", "RS": "HS256", "ES": "HS384"}[alg[:2]] if alg != "HS512" else "HS256"


def secure_cases(alg: str, ns: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    def sign(claims: dict[str, Any], with_alg: str = alg, key: Any = None) -> str:
        return jwt.encode(claims, key or signer(with_alg), algorithm=with_alg)

    def user(**who: str) -> dict[str, Any]:
        return {ns: who} if ns else who

    good = {"iat": IAT, "exp": FUTURE, **user(sub="alice")}
    token = sign(good)
    head, body, sig = token.split(".")
    tampered = f"{head}.{b64url(json.dumps({**good, 'exp': FUTURE + 1}).encode())}.{sig}"
    return [
        ("valid sub", token, {**VALID, "user_id": "alice"}),
        ("valid user_id", sign({"iat": IAT, "exp": FUTURE, **user(user_id="bob")}),
         {**VALID, "user_id": "bob"}),
        ("garbage", "not-a-token", MALFORMED),
        ("alg none", unsigned(good), MISMATCH),
        ("other alg", sign(good, other_alg(alg), "x" * 64), MISMATCH),
        ("tampered payload", tampered, BAD_SIGNATURE),
        ("no signature", f"{head}.{body}.", BAD_SIGNATURE),
        ("missing iat", sign({"exp": FUTURE, **user(sub="a")}), missing("iat")),
        ("missing exp", sign({"iat": IAT, **user(sub="a")}), missing("exp")),
        ("expired", sign({**good, "exp": PAST}), EXPIRED),
        ("not yet valid", sign({**good, "nbf": FUTURE}), NOT_YET_VALID),
        ("iat in the future", sign({**good, "iat": FAR_FUTURE_IAT}), invalid("iat", "4838572800")),
        ("exp not a number", sign({**good, "exp": "soon"}), invalid("exp", '"soon"')),
        ("no user", sign({"iat": IAT, "exp": FUTURE}), BAD_USER),
        ("blank user", sign({"iat": IAT, "exp": FUTURE, **user(sub="  ")}), BAD_USER),
    ]  # fmt: skip


def insecure_cases(ns: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    def user(**who: Any) -> dict[str, Any]:
        return {ns: who} if ns else who

    signed = jwt.encode({**user(sub="carol")}, "any-secret-any-secret-any-secret", "HS256")
    return [
        ("unsigned sub", unsigned(user(sub="alice")), {**VALID, "user_id": "alice"}),
        ("unsigned user_id", unsigned(user(user_id="bob")), {**VALID, "user_id": "bob"}),
        ("signed, never checked", signed[:-4] + "AAAA", {**VALID, "user_id": "carol"}),
        ("garbage", "a.b", MALFORMED),
        ("expired", unsigned({"exp": PAST, **user(sub="a")}), EXPIRED),
        ("not yet valid", unsigned({"nbf": FUTURE, **user(sub="a")}), NOT_YET_VALID),
        ("iat in the future", unsigned({"iat": FAR_FUTURE_IAT, **user(sub="a")}),
         invalid("iat", "4838572800")),
        ("nbf is true", unsigned({"nbf": True, **user(sub="a")}), invalid("nbf", "true")),
        ("no user", unsigned({"exp": FUTURE}), BAD_USER),
        ("user is a number", unsigned(user(sub=42)), BAD_USER),
    ]  # fmt: skip


def main() -> None:
    KEYS.mkdir(exist_ok=True)
    configs: dict[str, dict[str, str]] = {}
    vectors: list[dict[str, Any]] = []

    def add(config: str, env: dict[str, str], cases: list[tuple[str, str, dict[str, Any]]]) -> None:
        configs[config] = env
        for name, token, expect in cases:
            vectors.append({"name": f"{config}: {name}", "config": config, "token": token,
                            "expect": {"user_id": "", **expect}})  # fmt: skip

    add("insecure", config_env(None), insecure_cases())
    add("insecure-namespace", config_env(None, AUTH_JWT_NAMESPACE=NS), insecure_cases(NS))
    for alg in ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"):
        add(alg, config_env(alg), secure_cases(alg))
    add("ES256-namespace", config_env("ES256", AUTH_JWT_NAMESPACE=NS), secure_cases("ES256", NS))
    good = {"iat": IAT, "exp": FUTURE, "sub": "alice", "iss": ISS, "aud": ["other", AUD]}
    sign = jwt.encode
    add(
        "HS256-iss-aud",
        config_env("HS256", AUTH_JWT_ISS=ISS, AUTH_JWT_AUD=AUD),
        [
            ("valid, aud in a list", sign(good, signer("HS256"), "HS256"),
             {**VALID, "user_id": "alice"}),
            ("missing iss", sign({k: v for k, v in good.items() if k != "iss"}, signer("HS256"),
                                 "HS256"), missing("iss")),
            ("wrong iss", sign({**good, "iss": "evil"}, signer("HS256"), "HS256"),
             invalid("iss", '"evil"')),
            ("no aud", sign({k: v for k, v in good.items() if k != "aud"}, signer("HS256"),
                            "HS256"), missing("aud")),
            ("wrong aud", sign({**good, "aud": "web"}, signer("HS256"), "HS256"),
             invalid("aud", '"web"')),
        ],
    )  # fmt: skip
    OUT.write_text(json.dumps({"configs": configs, "vectors": vectors}, indent=2) + "\n")
    print(f"{len(vectors)} vectors over {len(configs)} configs -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
