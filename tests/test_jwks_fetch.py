"""Fetching key sets over real HTTP from a server the tests control; clock and sleep injected."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwks_server import JwksServer, jwks_server
from support import public_jwk

from sidecar.core import jws
from sidecar.core.errors import KeysUnavailable
from sidecar.keys import jwks
from sidecar.keys.fetch import FetchSettings, Refresher, Remote, max_age, url_problem
from sidecar.observe import logs

RS = frozenset({"RS256"})
SETTINGS = FetchSettings(refresh=300, min_refresh=10, timeout=5, max_bytes=64 * 1024)


class FakeTime:
    """An injected clock, and a sleep that records its delay and returns only when cancelled."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.Event().wait()


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with jwks_server() as running:
        yield running


def accepts(verifier: jwks.JwksVerifier, key: rsa.RSAPrivateKey, kid: str) -> bool:
    token = jwt.encode({"sub": "u"}, key, algorithm="RS256", headers={"kid": kid})
    parsed = jws.parse(token, 1 << 16)
    return verifier.verify(parsed.header, parsed.signing_input, parsed.signature)


def refresher(
    url: str, settings: FetchSettings = SETTINGS, time: FakeTime | None = None, **kw: Any
) -> tuple[Refresher, jwks.JwksVerifier]:
    verifier = jwks.JwksVerifier(RS)
    time = time or FakeTime()
    remote = Remote(url, discovery=kw.pop("discovery", False))
    return Refresher(remote, verifier, settings, clock=time.clock, sleep=time.sleep), verifier


@pytest.mark.parametrize(
    ("url", "allow_http", "problem"),
    [
        ("https://idp.example/keys", False, None),
        ("http://127.0.0.1:8080/keys", False, None),
        ("http://[::1]/keys", False, None),
        ("http://localhost/keys", False, None),
        ("http://idp.example/keys", True, None),
        ("http://idp.example/keys", False, "not a loopback host"),
        ("ftp://idp.example/keys", False, "must be an https:// URL"),
        ("idp.example/keys", False, "must be an https:// URL"),
        ("https://[::1/keys", False, "is not a URL"),
    ],
)
def test_which_urls_are_accepted(url: str, allow_http: bool, problem: str | None) -> None:
    found = url_problem(url, allow_http)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("public, max-age=60", 60),
        ('max-age="30", must-revalidate', 30),
        ("s-maxage=5", None),
        ("no-store", 0),
        ("private, no-cache", 0),
    ],
)
def test_max_age_is_read_from_cache_control(header: str | None, seconds: float | None) -> None:
    assert max_age(header) == seconds


@pytest.mark.parametrize(
    ("cache_control", "delay"),
    [(None, 300), ("max-age=60", 60), ("max-age=1", 10), ("max-age=86400", 300), ("no-store", 10)],
)
async def test_cache_control_sets_the_next_refresh_within_bounds(
    server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey], cache_control: str | None, delay: float
) -> None:
    server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
    if cache_control:
        server.headers["Cache-Control"] = cache_control
    fetcher, _ = refresher(server.url)
    assert await fetcher.refresh()
    assert fetcher.next_delay(True) == delay


async def test_down_at_start_then_up(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    with jwks_server(up=False) as server:
        server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
        fetcher, verifier = refresher(server.url)
        assert not await fetcher.refresh()
        assert not await fetcher.refresh()
        # Back-off after failures: 1 s, then 2 s.
        assert fetcher.next_delay(False) == 2
        with pytest.raises(KeysUnavailable):
            accepts(verifier, rsa_keys[0], "a")
        assert not fetcher.ready.is_set()
        server.up()
        assert await fetcher.refresh()
        assert fetcher.ready.is_set()
        assert accepts(verifier, rsa_keys[0], "a")


@pytest.mark.parametrize("failure", ["status", "drop", "invalid json", "oversized", "no keys"])
async def test_a_failed_refresh_keeps_the_last_good_set(
    server: JwksServer,
    rsa_keys: list[rsa.RSAPrivateKey],
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
    fetcher, verifier = refresher(server.url)
    assert await fetcher.refresh()
    if failure == "status":
        server.status = 503
    elif failure == "drop":
        server.drop = True
    elif failure == "invalid json":
        server.routes["/jwks.json"] = b'{"keys": ['
    elif failure == "oversized":
        server.serve_keys(*[public_jwk(rsa_keys[1], kid=f"k{i}") for i in range(200)])
        assert len(server.routes["/jwks.json"]) > SETTINGS.max_bytes
    else:
        server.serve_keys()
    with caplog.at_level(logging.WARNING, "auth-sidecar.jwks"):
        assert not await fetcher.refresh()
    assert accepts(verifier, rsa_keys[0], "a")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "keeping the last good set (1 keys)" in line
    expected = {
        "status": "answered HTTP 503",
        "drop": "cannot fetch",
        "invalid json": "is not valid JSON",
        "oversized": f"more than {SETTINGS.max_bytes} bytes",
        "no keys": "holds no key usable with RS256",
    }[failure]
    assert expected in line


async def test_a_slow_provider_times_out(
    server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
    fetcher, verifier = refresher(server.url, FetchSettings(300, 10, 0.3, 65536))
    assert await fetcher.refresh()
    server.holding = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await fetcher.refresh()
    assert loop.time() - started < 5
    assert accepts(verifier, rsa_keys[0], "a")


async def test_rotation_is_followed(server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    old, new = rsa_keys
    server.serve_keys(public_jwk(old, kid="old"))
    fetcher, verifier = refresher(server.url)
    assert await fetcher.refresh()
    assert accepts(verifier, old, "old")
    assert not accepts(verifier, new, "new")
    server.serve_keys(public_jwk(old, kid="old"), public_jwk(new, kid="new"))
    assert await fetcher.refresh()
    assert accepts(verifier, old, "old")
    assert accepts(verifier, new, "new")
    server.serve_keys(public_jwk(new, kid="new"))
    assert await fetcher.refresh()
    assert not accepts(verifier, old, "old")
    assert accepts(verifier, new, "new")


async def until(condition: Any, timeout: float = 10) -> None:
    """A bounded poll on a concrete condition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_random_kid_flood_fetches_at_most_once_per_min_refresh(
    server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
    time = FakeTime()
    fetcher, verifier = refresher(server.url, time=time)
    task = asyncio.create_task(fetcher.run())
    try:
        await until(lambda: len(time.sleeps) == 1)
        assert server.count() == 1
        flood = 1000
        for _ in range(flood):  # within the interval: no fetch at all
            assert not accepts(verifier, rsa_keys[0], uuid.uuid4().hex)
        time.now += SETTINGS.min_refresh - 0.5
        for _ in range(flood):
            assert not accepts(verifier, rsa_keys[0], uuid.uuid4().hex)
        time.now += 0.5  # now the interval is over: one fetch for the whole flood
        for _ in range(flood):
            assert not accepts(verifier, rsa_keys[0], uuid.uuid4().hex)
        await until(lambda: len(time.sleeps) == 2)
        # The provider published the kid meanwhile; it is there after one more interval.
        server.serve_keys(public_jwk(rsa_keys[0], kid="a"), public_jwk(rsa_keys[1], kid="late"))
        assert not accepts(verifier, rsa_keys[1], "late")
        time.now += SETTINGS.min_refresh
        assert not accepts(verifier, rsa_keys[1], "late")
        await until(lambda: len(time.sleeps) == 3)
        assert accepts(verifier, rsa_keys[1], "late")
        # 3000 unknown kids plus 2 for "late": the start-up fetch and two more.
        assert server.count() == 3
        assert time.sleeps == [300, 300, 300]
    finally:
        task.cancel()


async def test_oidc_discovery_finds_the_keys(
    server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    issuer = server.base + "/realms/test"
    server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
    server.routes["/realms/test/.well-known/openid-configuration"] = _discovery(issuer, server.url)
    fetcher, verifier = refresher(issuer, discovery=True)
    assert await fetcher.refresh()
    assert accepts(verifier, rsa_keys[0], "a")
    # Later refreshes go straight to the keys.
    assert await fetcher.refresh()
    assert server.requests.count("/realms/test/.well-known/openid-configuration") == 1
    assert server.count() == 2


@pytest.mark.parametrize(
    ("endpoint", "kept"),
    [
        ("{base}/introspect", True),
        ("http://idp.example/introspect", False),  # http:// to a host that is not loopback
        (7, False),
        (None, False),
    ],
)
async def test_oidc_discovery_keeps_a_usable_introspection_endpoint(
    server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey], endpoint: Any, kept: bool
) -> None:
    issuer = server.base + "/realms/test"
    server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
    document = json.loads(_discovery(issuer, server.url))
    if endpoint is not None:
        endpoint = endpoint.format(base=server.base) if isinstance(endpoint, str) else endpoint
        document["introspection_endpoint"] = endpoint
    server.routes["/realms/test/.well-known/openid-configuration"] = json.dumps(document).encode()
    fetcher, verifier = refresher(issuer, discovery=True)
    assert await fetcher.refresh()
    assert verifier.introspection_endpoint == (endpoint if kept else None)


@pytest.mark.parametrize(
    ("issuer_in_document", "jwks_uri", "problem"),
    [
        ("https://other.example", None, "names issuer 'https://other.example'"),
        (None, "http://idp.example/keys", "its jwks_uri is http:// to idp.example"),
        (None, 7, "has no jwks_uri"),
    ],
)
async def test_oidc_discovery_is_checked(
    server: JwksServer,
    caplog: pytest.LogCaptureFixture,
    issuer_in_document: str | None,
    jwks_uri: Any,
    problem: str,
) -> None:
    issuer = server.base
    document = _discovery(
        issuer_in_document or issuer, server.url if jwks_uri is None else jwks_uri
    )
    server.routes["/.well-known/openid-configuration"] = document
    fetcher, _ = refresher(issuer, discovery=True)
    with caplog.at_level(logging.WARNING, "auth-sidecar.jwks"):
        assert not await fetcher.refresh()
    assert problem in caplog.records[0].getMessage()
    assert server.count() == 0


async def test_a_redirect_to_a_forbidden_url_is_not_followed(server: JwksServer) -> None:
    server.status = 302
    server.headers["Location"] = "http://idp.example/jwks.json"
    server.routes["/jwks.json"] = b""
    fetcher, _ = refresher(server.url)
    assert not await fetcher.refresh()
    assert server.count() == 1


async def test_https_with_a_private_ca(
    rsa_keys: list[rsa.RSAPrivateKey], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with jwks_server(ssl_context=context) as server:
        server.serve_keys(public_jwk(rsa_keys[0], kid="a"))
        with caplog.at_level(logging.WARNING, "auth-sidecar.jwks"):
            system_cas, _ = refresher(server.url)
            assert not await system_cas.refresh()
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.records[0].getMessage()
        private, verifier = refresher(server.url, FetchSettings(300, 10, 5, 65536, str(cert)))
        assert await private.refresh()
        assert accepts(verifier, rsa_keys[0], "a")


def _discovery(issuer: str, jwks_uri: Any) -> bytes:
    return json.dumps({"issuer": issuer, "jwks_uri": jwks_uri}).encode()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_every_skipped_key_is_reported_at_each_load(
    server: JwksServer, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    """Through the handler's real repeat filter: three skips in one set share a template, and
    each must still be shown, with its kid and why; the same set loaded again within the
    filter's interval is held back."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    server.serve_keys(
        public_jwk(small, kid="rsa-1024"),
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "oct-1"},
        {"kty": "weird", "kid": "weird-1"},
        public_jwk(rsa_keys[0], kid="good"),
    )
    now = [0.0]
    shown: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(logs.RepeatFilter(logs.REPEAT_SECONDS, lambda: now[0]))
    logger = logging.getLogger("auth-sidecar.jwks")
    logger.addHandler(handler)
    try:
        fetcher, _ = refresher(server.url)
        assert await fetcher.refresh()
        first = list(shown)
        assert await fetcher.refresh()  # within the interval: held back
        assert shown == first
        now[0] = logs.REPEAT_SECONDS
        assert await fetcher.refresh()  # the next load after it: reported again
    finally:
        logger.removeHandler(handler)
    where = f"key set at {server.url}: skipped kid"
    assert first == [
        f"{where} 'rsa-1024': it is a 1024-bit RSA key; at least 2048 bits are needed",
        f"{where} 'oct-1': symmetric (oct) keys are never taken from a URL",
        f"{where} 'weird-1': unknown key type 'weird'",
    ]
    assert shown == first + first
