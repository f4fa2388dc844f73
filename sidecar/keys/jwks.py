"""JWK Sets (RFC 7517/7518) turned into ready verification keys, once per set. Pure: no I/O.

`parse` builds an immutable `KeySet` and a list of warnings for the keys it skipped; the caller
logs them. `JwksVerifier` holds the current set and swaps it by reference, so that a call sees the
old set or the new one, never a mix. Where RFC 7517 is silent, this does what Envoy's jwt_authn
does: a token's `kid` selects the keys with that `kid` and the keys without one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose.backends.base import Key
from jose.backends.cryptography_backend import CryptographyHMACKey
from jose.exceptions import JWKError

from sidecar.core import jws
from sidecar.core.errors import KeysUnavailable, MalformedToken
from sidecar.keys.algorithms import (
    HS_ALGS,
    HS_MIN_BYTES,
    JWK_CURVES,
    RSA_ALGS,
    RSA_MIN_BITS,
    ed_algs,
    ready_key,
    thumbprint,
)
from sidecar.keys.native import ED_CURVES, EdPublic

# A token without `kid` is tried against at most this many fitting keys, so that it costs a
# bounded number of signature checks whatever the set holds.
MAX_TRIES = 4
# Keys beyond this many in one set are skipped: a set is a handful of keys, not a key store.
MAX_KEYS = 64


class JwksProblem(ValueError):
    """The document is not a usable JWK Set: not JSON, not a set, or no usable key in it."""


class _Skip(Exception):
    """One key cannot be used; its text says why."""


@dataclass(frozen=True, slots=True)
class KeySet:
    """Ready keys, looked up by (`kid`, alg); keys without a `kid` by alg alone."""

    named: Mapping[str, Mapping[str, tuple[Key, ...]]] = field(default_factory=dict)
    unnamed: Mapping[str, tuple[Key, ...]] = field(default_factory=dict)
    # Every fitting key per alg, first MAX_TRIES only: what a token without `kid` is tried against.
    any_key: Mapping[str, tuple[Key, ...]] = field(default_factory=dict)
    # RFC 7638 thumbprint -> kid, so that Mint can name its key as the set names it.
    kid_by_thumbprint: Mapping[str, str] = field(default_factory=dict)
    thumbprints: frozenset[str] = frozenset()
    # How many JWKs of the document are usable, for logs.
    count: int = 0

    def candidates(self, alg: str, kid: str | None) -> tuple[tuple[Key, ...], bool]:
        """The keys to try for a token, and whether its `kid` is one this set names."""
        if kid is None:
            return self.any_key.get(alg, ()), True
        named = self.named.get(kid)
        unnamed = self.unnamed.get(alg, ())
        if named is None:
            return unnamed, False
        return named.get(alg, ()) + unnamed, True


def parse(
    document: str | bytes, allowed: frozenset[str], *, allow_oct: bool
) -> tuple[KeySet, list[str]]:
    """Builds the keys of a JWK Set that fit `allowed`; returns them and one warning per skip.

    Raises JwksProblem when the document is not a JWK Set or no usable key is left.
    `allow_oct=False` (a set from a URL) skips symmetric keys: a published secret is no secret.
    """
    try:
        data = json.loads(document, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise JwksProblem("is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksProblem('is not a JWK Set: expected a JSON object with a "keys" array')
    warnings: list[str] = []
    named: dict[str, dict[str, list[Key]]] = {}
    unnamed: dict[str, list[Key]] = {}
    any_key: dict[str, list[Key]] = {}
    kid_by_thumbprint: dict[str, str] = {}
    thumbprints: set[str] = set()
    entries: list[Any] = data["keys"]
    if len(entries) > MAX_KEYS:
        warnings.append(f"the set has {len(entries)} keys; only the first {MAX_KEYS} are used")
    count = 0
    for index, jwk in enumerate(entries[:MAX_KEYS]):
        label = _label(index, jwk)
        try:
            ready = _build(jwk, allowed, allow_oct)
        except _Skip as skip:
            warnings.append(f"skipped {label}: {skip}")
            continue
        count += 1
        kid = jwk.get("kid")
        target = named.setdefault(kid, {}) if kid is not None else unnamed
        for alg, key in ready.items():
            target.setdefault(alg, []).append(key)
            any_key.setdefault(alg, []).append(key)
        thumbprints.add(thumbprint(jwk))
        if kid is not None:
            kid_by_thumbprint.setdefault(thumbprint(jwk), kid)
    if not any_key:
        raise JwksProblem(
            f"holds no key usable with {', '.join(sorted(allowed))}"
            + (f" ({'; '.join(warnings)})" if warnings else "")
        )
    keys = KeySet(
        named={kid: {a: tuple(k) for a, k in algs.items()} for kid, algs in named.items()},
        unnamed={alg: tuple(k) for alg, k in unnamed.items()},
        any_key={alg: tuple(k[:MAX_TRIES]) for alg, k in any_key.items()},
        kid_by_thumbprint=kid_by_thumbprint,
        thumbprints=frozenset(thumbprints),
        count=count,
    )
    return keys, warnings


class JwksVerifier:
    """The `Verifier` over a JWK Set that may change while calls are in flight.

    `on_unknown_kid` is called (cheaply, from the request path) when a token names a `kid` the
    current set does not; a fetcher uses it to refetch, at a rate it bounds itself.
    """

    def __init__(
        self,
        algorithms: frozenset[str],
        keys: KeySet | None = None,
        on_unknown_kid: Callable[[], None] | None = None,
    ) -> None:
        self.algorithms = algorithms
        self._keys = keys
        self._on_unknown_kid = on_unknown_kid
        # Counts the sets swapped in, so that a decision cache can tell its keys have changed.
        self.generation = 0
        # OIDC discovery's introspection_endpoint, when the source is an OIDC issuer that
        # names one: the verifier is what outlives reloads, so the endpoint is kept with it.
        self.introspection_endpoint: str | None = None

    @property
    def keys(self) -> KeySet | None:
        return self._keys

    def update(self, keys: KeySet) -> None:
        """Swaps in a new set: one reference assignment, atomic for every reader."""
        self._keys = keys
        self.generation += 1

    def set_unknown_kid_hook(self, hook: Callable[[], None]) -> None:
        self._on_unknown_kid = hook

    def verify(self, header: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
        """True when a key the token selects verifies it. Raises KeysUnavailable before a set."""
        keys = self._keys
        if keys is None:
            raise KeysUnavailable("no verification keys are loaded yet")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
            return False
        candidates, known = keys.candidates(alg, kid)
        if not known and self._on_unknown_kid is not None:
            self._on_unknown_kid()
        return any(_verifies(key, signing_input, signature) for key in candidates)


def _verifies(key: Key, signing_input: bytes, signature: bytes) -> bool:
    try:
        return bool(key.verify(signing_input, signature))
    except Exception:  # noqa: BLE001 - any failure inside the crypto is a bad signature
        return False


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _label(index: int, jwk: Any) -> str:
    kid = jwk.get("kid") if isinstance(jwk, dict) else None
    # %r-style quoting: a kid is the provider's text and must not start a log line of its own.
    return f"kid {kid[:80]!r}" if isinstance(kid, str) else f"key #{index} (no kid)"


def _build(jwk: Any, allowed: frozenset[str], allow_oct: bool) -> dict[str, Key]:
    """The ready key per alg that this JWK may verify, or _Skip saying why it may verify none."""
    if not isinstance(jwk, dict):
        raise _Skip("it is not a JSON object")
    if "kid" in jwk and not isinstance(jwk["kid"], str):
        raise _Skip('its "kid" is not a string')
    use, ops, own_alg = jwk.get("use"), jwk.get("key_ops"), jwk.get("alg")
    if use is not None and use != "sig":
        raise _Skip(f"its use is {use!r}, not 'sig'")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise _Skip('its "key_ops" do not include "verify"')
    kty = jwk.get("kty")
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | EdPublic | bytes
    algs: tuple[str, ...]
    if kty == "RSA":
        key, algs = _rsa(jwk), RSA_ALGS
    elif kty == "EC":
        key, alg = _ec(jwk)
        algs = (alg,)
    elif kty == "OKP":
        key, algs = _okp(jwk)
    elif kty == "oct":
        if not allow_oct:
            raise _Skip("symmetric (oct) keys are never taken from a URL")
        key, algs = _octets(jwk, "k"), HS_ALGS
    else:
        raise _Skip(f"unknown key type {str(kty)[:20]!r}")
    if own_alg is not None:
        if own_alg not in algs:
            raise _Skip(f"its alg {str(own_alg)[:20]!r} does not fit a {kty} key")
        algs = (own_alg,)
    fitting = [a for a in algs if a in allowed]
    if not fitting:
        raise _Skip(f"it fits {', '.join(algs)}, none of which is allowed")
    ready = {}
    for alg in fitting:
        ready_key = _ready(alg, key)
        if ready_key is not None:
            ready[alg] = ready_key
    if not ready:
        raise _Skip(f"the secret is shorter than {', '.join(fitting)} needs")
    return ready


def _ready(alg: str, key: object) -> Key | None:
    if alg not in HS_ALGS:
        return ready_key(alg, key)
    assert isinstance(key, bytes)  # noqa: S101 - oct keys are bytes by construction
    if len(key) < HS_MIN_BYTES[alg]:  # RFC 7518 §3.2
        return None
    try:
        return CryptographyHMACKey(key, alg)
    except JWKError:  # python-jose refuses secrets that look like PEM or SSH keys
        return None


def _rsa(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    n = int.from_bytes(_octets(jwk, "n"), "big")
    e = int.from_bytes(_octets(jwk, "e"), "big")
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise _Skip("its n and e are not an RSA public key") from None
    if key.key_size < RSA_MIN_BITS:
        raise _Skip(f"it is a {key.key_size}-bit RSA key; at least {RSA_MIN_BITS} bits are needed")
    return key


def _ec(jwk: Mapping[str, Any]) -> tuple[ec.EllipticCurvePublicKey, str]:
    crv = jwk.get("crv")
    if crv not in JWK_CURVES:
        raise _Skip(f"unknown curve {str(crv)[:20]!r}")
    curve, alg, size = JWK_CURVES[crv].curve, JWK_CURVES[crv].alg, JWK_CURVES[crv].size
    x, y = _octets(jwk, "x"), _octets(jwk, "y")
    if len(x) != size or len(y) != size:  # RFC 7518 §6.2.1.2: full-length coordinates
        raise _Skip(f"its x and y are not {size} bytes each, as {crv} needs")
    try:
        point = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        )
        return point.public_key(), alg
    except ValueError:
        raise _Skip(f"its x and y are not a point on {crv}") from None


def _okp(jwk: Mapping[str, Any]) -> tuple[EdPublic, tuple[str, ...]]:
    """RFC 8037 §2: an Ed25519 or Ed448 public key, `x` its raw encoding."""
    crv = jwk.get("crv")
    if crv not in ED_CURVES:
        raise _Skip(f"unknown OKP curve {str(crv)[:20]!r}")
    try:
        key = ED_CURVES[crv][0].from_public_bytes(_octets(jwk, "x"))
    except ValueError:
        raise _Skip(f"its x is not an {crv} public key") from None
    return key, ed_algs(crv)


def _octets(jwk: Mapping[str, Any], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str) or not value:
        raise _Skip(f'it has no "{member}"')
    try:
        return jws.b64url_decode(value)
    except MalformedToken:
        raise _Skip(f'its "{member}" is not base64url') from None
