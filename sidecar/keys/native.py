"""RSA-PSS (RFC 7518 §3.5) and EdDSA (RFC 8037, RFC 9864) keys, over `cryptography` directly.

python-jose implements neither (mpdavis/python-jose#151). These classes take python-jose's `Key`
shape (`sign`, `verify`, `public_key`, `to_pem`, `to_dict`), so that verifiers, signers, JWK Sets
and the published set treat every algorithm alike. Only `sidecar.keys` imports this module.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, padding, rsa
from jose.backends.base import Key

from sidecar.core import jws

# RFC 7518 §3.5: MGF1 with the same hash, and a salt as long as the hash output.
PSS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "PS256": hashes.SHA256,
    "PS384": hashes.SHA384,
    "PS512": hashes.SHA512,
}

EdPublic = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
EdPrivate = ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
# RFC 8037 §2: an OKP key's `crv` for each of cryptography's key classes.
ED_CURVES: dict[str, tuple[type[EdPublic], type[EdPrivate]]] = {
    "Ed25519": (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey),
    "Ed448": (ed448.Ed448PublicKey, ed448.Ed448PrivateKey),
}

_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
_PEM = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo


def ed_curve(key: object) -> str | None:
    """The `crv` of an Ed25519 or Ed448 key, public or private; None for any other key."""
    for crv, classes in ED_CURVES.items():
        if isinstance(key, classes):
            return crv
    return None


class PssKey(Key):
    """An RSA key for one PS algorithm; private when it signs."""

    def __init__(self, key: rsa.RSAPublicKey | rsa.RSAPrivateKey, algorithm: str) -> None:
        self._key = key
        self._public_key = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
        self._alg = algorithm
        digest = PSS_HASHES[algorithm]()
        self._hash = digest
        self._padding = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)

    def sign(self, msg: bytes) -> bytes:
        assert isinstance(self._key, rsa.RSAPrivateKey)  # noqa: S101 - signers are built private
        return self._key.sign(msg, self._padding, self._hash)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        public = self._public()
        try:
            public.verify(sig, msg, self._padding, self._hash)
        except (InvalidSignature, ValueError):
            return False
        return True

    def public_key(self) -> PssKey:
        return PssKey(self._public(), self._alg)

    def to_pem(self) -> bytes:
        return self._public().public_bytes(*_PEM)

    def to_dict(self) -> dict[str, Any]:
        numbers = self._public().public_numbers()
        return {
            "kty": "RSA",
            "alg": self._alg,
            "n": jws.b64url_encode(_big_endian(numbers.n)),
            "e": jws.b64url_encode(_big_endian(numbers.e)),
        }

    def _public(self) -> rsa.RSAPublicKey:
        return self._public_key


class EdKey(Key):
    """An Ed25519 or Ed448 key for `EdDSA` or its curve's own name; private when it signs."""

    def __init__(self, key: EdPublic | EdPrivate, algorithm: str) -> None:
        self._key = key
        self._public_key: EdPublic = (
            key.public_key()
            if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
            else key
        )
        self._alg = algorithm
        crv = ed_curve(key)
        assert crv is not None  # noqa: S101 - callers pass Ed keys only
        self.crv = crv

    def sign(self, msg: bytes) -> bytes:
        assert isinstance(self._key, ED_CURVES[self.crv][1])  # noqa: S101 - signers are private
        return self._key.sign(msg)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self._public().verify(sig, msg)
        except (InvalidSignature, ValueError):
            return False
        return True

    def public_key(self) -> EdKey:
        return EdKey(self._public(), self._alg)

    def to_pem(self) -> bytes:
        return self._public().public_bytes(*_PEM)

    def to_dict(self) -> dict[str, Any]:
        raw = self._public().public_bytes(*_RAW)
        return {"kty": "OKP", "alg": self._alg, "crv": self.crv, "x": jws.b64url_encode(raw)}

    def _public(self) -> EdPublic:
        return self._public_key


def _big_endian(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
