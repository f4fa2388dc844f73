"""RFC 7662 token introspection: the one call on the request path, and only on a cache miss.

`IntrospectingDecider` sits in front of the JWT decider. A token that is a JWT (or is malformed
in any way but being opaque) is decided as before; with `every_token`, a valid JWT of the
issuer must also be active at the endpoint. An opaque token is decided from its kept
answer; without one it raises `IntrospectionNeeded`, whose `fetch()` the adapter awaits before
deciding again. The fetch makes one POST per token however many requests wait for it, at most
`max_rate` per second, within a deadline; the answer is kept in the `AnswerCache`. A failed call
is `KeysUnavailable`: adapters answer UNAVAILABLE and Envoy fails closed.

The HTTP client is urllib in a worker thread, like the JWKS fetcher's; the client secret is sent
as `client_secret_basic` (RFC 6749 §2.3.1) and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.core import jws
from sidecar.core.cache import Decider
from sidecar.core.errors import (
    Inactive,
    IntrospectionNeeded,
    KeysUnavailable,
    Reason,
    TokenError,
)
from sidecar.core.introspection import AnswerCache, decide_answer, digest
from sidecar.core.policy import Policy
from sidecar.core.validator import Decision
from sidecar.keys.fetch import shown

log = logging.getLogger("auth-sidecar.introspection")

Post = Callable[[str], Awaitable[Mapping[str, Any]]]
"""token -> the endpoint's JSON answer. Raises KeysUnavailable when there is none."""


@dataclass(frozen=True)
class IntrospectionSettings:
    """Where and how tokens are introspected; the defaults live in config/settings.py."""

    url: str | None
    """None: OIDC discovery's `introspection_endpoint`, found at run time (see `UrllibPost`)."""
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 5.0
    max_rate: float = 100.0
    cache_seconds: float = 60.0
    negative_seconds: float = 5.0
    ca_file: str | None = None
    max_bytes: int = 65536
    every_token: bool = False
    """JWTs of the issuer are introspected too, once their own checks pass."""


class UrllibPost:
    """POST `token=...` with client_secret_basic, a deadline, a size cap and no redirects."""

    def __init__(
        self, settings: IntrospectionSettings, locate: Callable[[], str | None] | None = None
    ) -> None:
        """`locate` gives the discovered endpoint when `settings.url` is None."""
        self._settings = settings
        self._locate = locate
        context = ssl.create_default_context(cafile=settings.ca_file)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirects()
        )
        # RFC 6749 §2.3.1: each part form-encoded, then joined and base64-encoded.
        pair = ":".join(
            urllib.parse.quote_plus(p) for p in (settings.client_id, settings.client_secret)
        )
        self._authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    async def __call__(self, token: str) -> Mapping[str, Any]:
        return await asyncio.to_thread(self.post, token)

    def post(self, token: str) -> Mapping[str, Any]:
        url = self._settings.url or (self._locate() if self._locate else None)
        if url is None:
            raise KeysUnavailable(
                "no introspection endpoint yet: OIDC discovery has not named a usable one"
            )
        body = urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"})
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked at load
            url,
            data=body.encode("ascii"),
            headers={
                "Authorization": self._authorization,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        try:
            with self._opener.open(request, timeout=self._settings.timeout) as response:
                status = response.status
                data = response.read(self._settings.max_bytes + 1)
        except urllib.error.HTTPError as error:
            raise KeysUnavailable(
                f"introspection at {shown(url)} answered HTTP {error.code}{_oauth_error(error)}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            why = getattr(error, "reason", None) or error
            raise KeysUnavailable(f"cannot reach introspection at {shown(url)}: {why}") from None
        if status != 200:
            raise KeysUnavailable(f"introspection at {shown(url)} answered HTTP {status}")
        if len(data) > self._settings.max_bytes:
            raise KeysUnavailable(f"introspection at {shown(url)} answered more than allowed")
        try:
            # The rules of a token's claims: its members become a decision's claims.
            answer: dict[str, Any] | None = jws.json_object(data)
        except TokenError:
            answer = None
        if answer is None or not isinstance(answer.get("active"), bool):
            raise KeysUnavailable(f"introspection at {shown(url)} did not answer RFC 7662 JSON")
        return answer


def _oauth_error(error: urllib.error.HTTPError) -> str:
    """RFC 6749 §5.2's `error` code of a refusal (`invalid_client`, or RFC 7662's
    `unsupported_token_type`), when the body has one: a registered word, safe to log."""
    try:
        code = json.loads(error.read(4096)).get("error")
    except (ValueError, AttributeError, OSError):
        return ""
    return f" ({code})" if isinstance(code, str) and _OAUTH_ERROR.fullmatch(code) else ""


_OAUTH_ERROR = re.compile(r"[a-z_]{1,40}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would resend the token and credentials elsewhere: it is an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class RateLimit:
    """A token bucket: `rate` calls per second, bursts of as many. The clock is injected."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = rate
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Introspector:
    """Fetches answers into the cache: one call per token in flight, rate limited."""

    def __init__(self, post: Post, cache: AnswerCache, limit: RateLimit) -> None:
        self._post = post
        self._cache = cache
        self._limit = limit
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self.calls = 0

    async def fetch(self, token: str) -> None:
        key = digest(token)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._call(token, key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        await asyncio.shield(pending)

    async def _call(self, token: str, key: bytes) -> None:
        if not self._limit.take():
            raise KeysUnavailable("introspection is over its rate limit; retry shortly")
        self.calls += 1
        answer = await self._post(token)
        self._cache.put(key, answer)


class IntrospectingDecider:
    """The `Decider` that decides opaque tokens from introspection, and JWTs by `inner`."""

    def __init__(
        self,
        inner: Decider,
        introspector: Introspector,
        cache: AnswerCache,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        every_token: bool = False,
    ) -> None:
        self._inner = inner
        self._introspector = introspector
        self._cache = cache
        self._policy = policy
        self._clock = clock
        self._every_token = every_token

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        decision = self._inner.decide(token, issuer_audience)
        if decision.valid:
            return self._still_active(token, decision) if self._every_token else decision
        if decision.reason is not Reason.MALFORMED or not self._opaque(token):
            return decision
        answer = self._answer(token)
        try:
            return decide_answer(answer, self._policy, int(self._clock()), issuer_audience)
        except TokenError as error:
            return Decision.refused(error)

    def _answer(self, token: str) -> Mapping[str, Any]:
        answer = self._cache.get(digest(token))
        if answer is None:
            raise IntrospectionNeeded(lambda: self._introspector.fetch(token))
        return answer

    def _still_active(self, token: str, decision: Decision) -> Decision:
        """A valid JWT of the introspected issuer, refused when the provider says inactive.
        Other issuers' JWTs are not its to answer for."""
        iss = self._policy.iss
        if iss is not None and decision.claims.get("iss") != iss:
            return decision
        if self._answer(token).get("active") is not True:
            return Decision.refused(Inactive())
        return decision

    def _opaque(self, token: str) -> bool:
        """Not a JWT, broken or whole: a JWT's first segment is a JSON object. Hydra's
        `ory_at_x.y` has two segments but no JSON header: it is opaque. Only malformed tokens
        get here, so a JWT's path costs nothing more."""
        if not token or len(token) > self._policy.max_token_bytes or token.isspace():
            return False
        try:
            header = json.loads(jws.b64url_decode(token.partition(".")[0]))
        except (TokenError, ValueError, RecursionError):
            return True
        return not isinstance(header, dict)
