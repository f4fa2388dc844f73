"""Keeps a remote JWK Set fresh: a JWKS URL, or OIDC discovery that leads to one.

The HTTP client is the standard library's urllib, run in a worker thread: the sidecar makes a few
small GETs every few minutes, which needs neither a new dependency nor an async client. Clock and
sleep are injected (as gax-go does), so tests drive the schedule without waiting.

Rules: a failed refresh keeps the last good set; until the first good one, the verifier raises
`KeysUnavailable`. An unknown `kid` wakes the loop at most once per `min_refresh` seconds, so a
flood of made-up kids costs the provider at most one request per interval.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPMessage
from typing import IO, Any
from urllib.parse import urlsplit

from sidecar.keys import jwks

log = logging.getLogger("auth-sidecar.jwks")

DISCOVERY_PATH = "/.well-known/openid-configuration"
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
# After a failure, retry after 1 s, 2 s, 4 s ... up to the refresh interval.
_FIRST_RETRY_SECONDS = 1.0


class FetchError(Exception):
    """One fetch failed; the text is safe to log (no body, no credentials)."""


@dataclass(frozen=True)
class FetchSettings:
    """How remote key sets are fetched; the defaults live in config/settings.py's table."""

    refresh: float
    min_refresh: float
    timeout: float
    max_bytes: int
    ca_file: str | None = None
    allow_http: bool = False


@dataclass(frozen=True)
class Remote:
    """Where the keys come from: a JWKS URL, or an OIDC issuer whose discovery names one."""

    url: str
    discovery: bool = False

    @property
    def discovery_url(self) -> str:
        return self.url.rstrip("/") + DISCOVERY_PATH


Transport = Callable[[str], Awaitable[tuple[bytes, float | None]]]
FetchHook = Callable[[str, bool], None]
"""(source URL as logged, whether the fetch brought a good key set) -> None."""


def url_problem(url: str, allow_http: bool) -> str | None:
    """Why a key URL may not be used, or None: https, or http to a loopback host or by opt-in."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"is not a URL: {url!r}"
    if parts.scheme not in ("https", "http") or not host:
        return f"must be an https:// URL, not {url!r}"
    if parts.scheme == "http" and not (allow_http or _is_loopback(host)):
        return (
            f"is http:// to {host}, which is not a loopback host; use https:// "
            "(or set SIDECAR_JWKS_ALLOW_HTTP=true)"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(url: str) -> str:
    """A URL fit for logs: no user info, query or fragment, which may hold credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}" + (
        parts.path
    )


def max_age(cache_control: str | None) -> float | None:
    """The `max-age` of a Cache-Control header, or None; `no-store`/`no-cache` count as 0."""
    if not cache_control:
        return None
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


class UrllibTransport:
    """GET with a deadline, a size cap, verified TLS and no redirect to a forbidden URL."""

    def __init__(self, settings: FetchSettings) -> None:
        self._settings = settings
        context = ssl.create_default_context(cafile=settings.ca_file)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context),
            _CheckedRedirects(settings.allow_http),
        )

    async def __call__(self, url: str) -> tuple[bytes, float | None]:
        return await asyncio.to_thread(self.get, url)

    def get(self, url: str) -> tuple[bytes, float | None]:
        """Blocking GET: the body and its max-age. Raises FetchError."""
        deadline = time.monotonic() + self._settings.timeout
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
        try:
            with self._opener.open(request, timeout=self._settings.timeout) as response:
                if response.status != 200:
                    raise FetchError(f"{shown(url)} answered HTTP {response.status}")
                body = _read_capped(response, self._settings.max_bytes, deadline, url)
                headers: Message = response.headers
                return body, max_age(headers.get("Cache-Control"))
        except urllib.error.HTTPError as error:
            raise FetchError(f"{shown(url)} answered HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise FetchError(f"cannot fetch {shown(url)}: {error.reason}") from None
        except TimeoutError:
            raise FetchError(
                f"{shown(url)} did not answer within {self._settings.timeout:g}s"
            ) from None
        except OSError as error:
            raise FetchError(f"cannot fetch {shown(url)}: {error}") from None


def _read_capped(response: IO[bytes], limit: int, deadline: float, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(min(65536, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise FetchError(f"{shown(url)} sent more than {limit} bytes (SIDECAR_JWKS_MAX_BYTES)")
        if time.monotonic() > deadline:
            raise TimeoutError
        chunks.append(chunk)
    return b"".join(chunks)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that configuration would have accepted."""

    def __init__(self, allow_http: bool) -> None:
        self._allow_http = allow_http

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        problem = url_problem(newurl, self._allow_http)
        if problem is not None:
            raise FetchError(f"{shown(req.full_url)} redirects to a URL that {problem}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Refresher:
    """Feeds one `JwksVerifier` from one remote source, in the background, for ever."""

    def __init__(
        self,
        remote: Remote,
        verifier: jwks.JwksVerifier,
        settings: FetchSettings,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_fetch: FetchHook | None = None,
    ) -> None:
        """`on_fetch(source, ok)` is told of every fetch's outcome (metrics)."""
        self._remote = remote
        self._on_fetch = on_fetch
        self._verifier = verifier
        self._settings = settings
        self._transport = transport or UrllibTransport(settings)
        self._clock = clock
        self._sleep = sleep
        self._jwks_url = None if remote.discovery else remote.url
        self._last_fetch: float | None = None
        self._failures = 0
        self._max_age: float | None = None
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        verifier.set_unknown_kid_hook(self.request_refresh)

    @property
    def verifier(self) -> jwks.JwksVerifier:
        return self._verifier

    def request_refresh(self) -> None:
        """Asks for an early fetch (a token named an unknown kid); rate-limited, never blocks."""
        last = self._last_fetch
        if last is not None and self._clock() - last >= self._settings.min_refresh:
            self._wake.set()

    async def run(self) -> None:
        """Fetches, then waits for the next due time or an early request; until cancelled."""
        while True:
            delay = self.next_delay(await self.refresh())
            await self._wait(delay)

    def next_delay(self, succeeded: bool) -> float:
        """Seconds until the next scheduled fetch, after a fetch that succeeded or not.

        On success: the response's max-age kept within [min_refresh, refresh], or `refresh` if it
        had none. On failure: exponential back-off from 1 s up to `refresh`.
        """
        settings = self._settings
        if not succeeded:
            return min(settings.refresh, _FIRST_RETRY_SECONDS * 2.0 ** (self._failures - 1))
        age = settings.refresh if self._max_age is None else self._max_age
        return min(max(age, settings.min_refresh), settings.refresh)

    async def refresh(self) -> bool:
        """One fetch; True when it brought a good set. Never raises for a fetch that failed."""
        self._last_fetch = self._clock()
        self._wake.clear()
        try:
            keys, age = await self._fetch()
        except (FetchError, jwks.JwksProblem) as error:
            self._failures += 1
            held = self._verifier.keys
            log.warning(
                "key refresh from %s failed: %s; %s",
                shown(self._remote.url),
                error,
                f"keeping the last good set ({held.count} keys)" if held else "no keys yet",
            )
            if self._remote.discovery:
                self._jwks_url = None  # the provider may have moved its keys: rediscover
            if self._on_fetch:
                self._on_fetch(shown(self._remote.url), False)
            return False
        self._failures = 0
        self._max_age = age
        self._verifier.update(keys)
        if self._on_fetch:
            self._on_fetch(shown(self._remote.url), True)
        if not self.ready.is_set():
            log.info("loaded %d keys from %s", keys.count, shown(self._jwks_url or ""))
            self.ready.set()
        return True

    async def _fetch(self) -> tuple[jwks.KeySet, float | None]:
        if self._jwks_url is None:
            self._jwks_url = await self._discover()
        body, age = await self._transport(self._jwks_url)
        try:
            keys, warnings = jwks.parse(body, self._verifier.algorithms, allow_oct=False)
        except jwks.JwksProblem as problem:
            raise FetchError(f"the key set at {shown(self._jwks_url)} {problem}") from None
        where = shown(self._jwks_url)
        for warning in warnings:  # at each load; each skipped key a warning of its own
            log.warning("key set at %s: %s", where, warning, extra={"repeat_key": (where, warning)})
        return keys, age

    async def _discover(self) -> str:
        """OpenID Connect Discovery 1.0 §4: the document names its issuer, which must match."""
        url = self._remote.discovery_url
        body, _ = await self._transport(url)
        try:
            document = json.loads(body)
        except ValueError:
            raise FetchError(f"{shown(url)} is not valid JSON") from None
        if not isinstance(document, dict):
            raise FetchError(f"{shown(url)} is not a JSON object")
        if document.get("issuer") != self._remote.url:
            raise FetchError(
                f"{shown(url)} names issuer {str(document.get('issuer'))[:200]!r}, "
                f"not {self._remote.url!r} (OIDC discovery requires them equal)"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError(f"{shown(url)} has no jwks_uri")
        problem = url_problem(jwks_uri, self._settings.allow_http)
        if problem is not None:
            raise FetchError(f"its jwks_uri {problem}")
        # RFC 8414 §2's member, which discovery documents carry too: kept only if usable.
        endpoint = document.get("introspection_endpoint")
        if not isinstance(endpoint, str) or url_problem(endpoint, self._settings.allow_http):
            endpoint = None
        self._verifier.introspection_endpoint = endpoint
        return jwks_uri

    async def _wait(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
