"""Turns configured key material into ready `Verifier` and `Signer` objects, once, at start-up.

Every check that a key fits its algorithm happens here, so that the request path never parses a
PEM or meets a key of the wrong kind. Problems are raised as `KeyProblem` with a sentence that the
config loader prefixes with the variable's name. python-jose's cryptography backend does the
signing and verifying for Electric's nine algorithms; `sidecar.keys.native` does PS* and EdDSA,
which python-jose lacks, over `cryptography` directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jose.backends.base import Key
from jose.backends.cryptography_backend import (
    CryptographyECKey,
    CryptographyHMACKey,
    CryptographyRSAKey,
)
from jose.exceptions import JWKError

from sidecar.keys.native import ED_CURVES, PSS_HASHES, EdKey, PssKey, ed_curve

HS_ALGS = ("HS256", "HS384", "HS512")
RS_ALGS = ("RS256", "RS384", "RS512")
ES_ALGS = ("ES256", "ES384", "ES512")
ALGORITHMS = HS_ALGS + RS_ALGS + ES_ALGS
"""Electric's nine, the ones its error message lists."""
PS_ALGS = tuple(PSS_HASHES)
# RFC 9864: `EdDSA` names either curve (deprecated, still what most providers write); `Ed25519`
# and `Ed448` name one.
ED_ALGS = ("EdDSA", *ED_CURVES)
EXTENDED_ALGS = PS_ALGS + ED_ALGS
"""Beyond Electric: accepted only when configured, with a PEM key or a JWK Set."""
SUPPORTED_ALGS = ALGORITHMS + EXTENDED_ALGS
RSA_ALGS = RS_ALGS + PS_ALGS


def ed_algs(crv: str) -> tuple[str, ...]:
    """The algs an OKP key of curve `crv` may verify: `EdDSA` and its own name."""
    return ("EdDSA", crv)


# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
HS_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


@dataclass(frozen=True)
class Curve:
    """An ES algorithm's one curve (RFC 7518 §3.4), by every name it goes by."""

    alg: str
    crv: str  # its JWK name (RFC 7518 §6.2.1.1)
    curve: ec.EllipticCurve
    size: int  # bytes in one coordinate

    @property
    def name(self) -> str:
        return self.curve.name


CURVES = (
    Curve("ES256", "P-256", ec.SECP256R1(), 32),
    Curve("ES384", "P-384", ec.SECP384R1(), 48),
    Curve("ES512", "P-521", ec.SECP521R1(), 66),
)
ES_CURVES = {c.alg: c for c in CURVES}
JWK_CURVES = {c.crv: c for c in CURVES}
_CURVE_NAMES = {c.name: c.crv for c in CURVES}
# RFC 7518 §3.3: RSA keys of 2048 bits or more.
RSA_MIN_BITS = 2048

BASE64_PREFIX = "base64:"

_PEM_HINT = {
    "public": "-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----",
    "private": "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----",
}


class KeyProblem(ValueError):
    """Key material does not fit the configured algorithm."""


def hs_secret(value: str) -> bytes:
    """Reads an HMAC secret: raw bytes, or `base64:<standard base64>` for binary material.

    Unlike Electric's newest code, a value without the prefix is never base64-decoded, so a hex
    key such as `openssl rand -hex 32` means its own 64 characters.
    """
    if not value.startswith(BASE64_PREFIX):
        return value.encode("utf-8")
    try:
        return base64.b64decode(value[len(BASE64_PREFIX) :], validate=True)
    except ValueError:  # binascii.Error, or a ValueError for non-ASCII text
        raise KeyProblem("the value after 'base64:' is not valid standard base64") from None


class JoseVerifier:
    """A `sidecar.crypto.Verifier` over one python-jose key, for its one algorithm."""

    def __init__(self, alg: str, key: Key) -> None:
        self.algorithms = frozenset((alg,))
        self.alg = alg
        self.key = key

    def verify(self, header: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
        return bool(self.key.verify(signing_input, signature))


class JoseSigner:
    """A `sidecar.crypto.Signer` over one python-jose key."""

    def __init__(self, alg: str, key: Key, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid
        self.key = key

    def sign(self, signing_input: bytes) -> bytes:
        return bytes(self.key.sign(signing_input))


# RFC 7638 §3.2: the members of each key type that its thumbprint covers.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "oct": ("k", "kty"),
    "OKP": ("crv", "kty", "x"),  # RFC 8037 §2
}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a key's name derived from the key alone."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty", ""))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("a thumbprint needs kty RSA, EC, OKP or oct with its required members")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def key_thumbprint(key: Key) -> str:
    """The RFC 7638 thumbprint of a python-jose key's public half (an HMAC key's secret)."""
    public = key if isinstance(key, CryptographyHMACKey) else key.public_key()
    return thumbprint(public.to_dict())


def published_jwks(signer: object) -> dict[str, list[dict[str, str]]]:
    """The JWK Set that lets others verify Mint's tokens: the signer's public key, with
    the kid Mint writes in its headers. An HS signer's key is a secret: never published."""
    if not isinstance(signer, JoseSigner) or signer.alg in HS_ALGS:
        return {"keys": []}
    public = signer.key.public_key().to_dict()
    jwk = {name: public[name] for name in _THUMBPRINT_MEMBERS[public["kty"]]}
    jwk.update(kid=signer.kid or key_thumbprint(signer.key), alg=signer.alg, use="sig")
    return {"keys": [jwk]}


def verifier(alg: str, material: str) -> JoseVerifier:
    """Builds what checks signatures for `alg` from AUTH_JWT_KEY's value."""
    if alg in HS_ALGS:
        return JoseVerifier(alg, _hmac_key(alg, material))
    public = _load_public(alg, material)
    _check_fits(alg, public)
    return JoseVerifier(alg, ready_key(alg, public))


def hs_signer(verifier: JoseVerifier) -> JoseSigner:
    """HS algorithms sign with the shared secret that verifies. Its kid is its thumbprint."""
    return JoseSigner(verifier.alg, verifier.key, key_thumbprint(verifier.key))


def signer(alg: str, material: str, verifier: JoseVerifier | None) -> JoseSigner:
    """Builds Mint's signer for an asymmetric `alg` and checks it pairs with `verifier`.

    `verifier=None` (a JWK Set is the key source) leaves the pairing check to the caller. The
    kid is the key's RFC 7638 thumbprint; the caller may rename it after a JWK's own kid.
    """
    try:
        private = serialization.load_pem_private_key(material.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise KeyProblem(_not_valid(alg, "private")) from None
    if not isinstance(private, _PRIVATE if alg in EXTENDED_ALGS else _PRIVATE[:2]):
        raise KeyProblem(_not_valid(alg, "private"))
    _check_fits(alg, private.public_key())
    key = ready_key(alg, private)
    if verifier is not None and key.public_key().to_pem() != verifier.key.public_key().to_pem():
        raise KeyProblem("is not the private half of AUTH_JWT_KEY; Mint's tokens would not verify")
    return JoseSigner(alg, key, key_thumbprint(key))


def _hmac_key(alg: str, material: str) -> Key:
    secret = hs_secret(material)
    need = HS_MIN_BYTES[alg]
    if len(secret) < need:
        raise KeyProblem(f"The 'key' needs to be at least {need} bytes long for {alg}")
    try:
        return CryptographyHMACKey(secret, alg)
    except JWKError:
        raise KeyProblem(f"is a PEM or SSH key, but {alg} needs a shared secret") from None


_PUBLIC = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)
_PRIVATE = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
Public = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
# Which class wraps a checked cryptography key for each asymmetric alg.
_WRAPPERS: dict[str, Any] = {
    **dict.fromkeys(RS_ALGS, CryptographyRSAKey),
    **dict.fromkeys(ES_ALGS, CryptographyECKey),
    **dict.fromkeys(PS_ALGS, PssKey),
    **dict.fromkeys(ED_ALGS, EdKey),
}


def ready_key(alg: str, key: object) -> Key:
    """Wraps a cryptography key that fits `alg` in the class that signs and verifies for it."""
    wrapped: Key = _WRAPPERS[alg](key, alg)
    return wrapped


def _load_public(alg: str, material: str) -> Public:
    data = material.encode("utf-8")
    if b"PRIVATE KEY-----" in data:
        raise KeyProblem(
            "holds a private key; give its public key here, and the private key in "
            "AUTH_JWT_SIGNING_KEY if Mint should sign"
        )
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyProblem(_not_valid(alg, "public")) from None
    # Electric's nine keep Electric's wording for any key of another family.
    if not isinstance(public, _PUBLIC if alg in EXTENDED_ALGS else _PUBLIC[:2]):
        raise KeyProblem(_not_valid(alg, "public"))
    return public


def _check_fits(alg: str, public: object) -> None:
    if alg in ED_ALGS:
        crv = ed_curve(public)
        if crv is None:
            raise KeyProblem(f"is not an Ed25519 or Ed448 key, but AUTH_JWT_ALG={alg} needs one")
        if alg not in ed_algs(crv):
            raise KeyProblem(f"is an {crv} key, but {alg} needs {alg}")
        return
    if alg in RSA_ALGS:
        if not isinstance(public, rsa.RSAPublicKey):
            raise KeyProblem(f"is not an RSA key, but AUTH_JWT_ALG={alg} needs one")
        if public.key_size < RSA_MIN_BITS:
            raise KeyProblem(
                f"is a {public.key_size}-bit RSA key; {alg} needs at least {RSA_MIN_BITS} bits"
            )
        return
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise KeyProblem(f"is not an EC key, but AUTH_JWT_ALG={alg} needs one")
    if public.curve.name != ES_CURVES[alg].name:
        have = _CURVE_NAMES.get(public.curve.name, public.curve.name)
        raise KeyProblem(f"is a {have} key, but {alg} needs {ES_CURVES[alg].crv}")


def _not_valid(alg: str, kind: str) -> str:
    if alg in RSA_ALGS:
        family = "RSA"
    elif alg in ED_ALGS:
        family = "Ed25519 or Ed448" if alg == "EdDSA" else alg
    else:
        family = f"EC {ES_CURVES[alg].crv}"
    return (
        f"is not a valid key for AUTH_JWT_ALG={alg} or it has invalid format; "
        f"expected an {family} {kind} key in PEM: {_PEM_HINT[kind]}"
    )
