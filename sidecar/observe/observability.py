"""What the config asks to observe: metrics (with the HTTP side listener) and the decision log.

All of it is off by default, and then the adapters get the Validator itself: nothing is added to
the hot path. When on, each adapter gets its own `Observed` decider, bound to its RPC once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping

from sidecar.config import Config
from sidecar.core.cache import Decider
from sidecar.core.errors import Forbidden, Reason
from sidecar.core.validator import Decision
from sidecar.keys import algorithms
from sidecar.observe.metrics import Metrics
from sidecar.observe.side import SideListener
from sidecar.observe.traffic import Traffic

decision_log = logging.getLogger("auth-sidecar.decisions")

TOKEN_HASH_CHARS = 16  # 64 bits of SHA-256: enough to match log lines, too few to be a token


class Observability:
    """Metrics, the side listener and the decision log, as `config` asks."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.metrics = Metrics(Metrics.multiprocess_dir()) if config.http_listen else None
        self.traffic = Traffic(self.metrics.meter if self.metrics else None)
        self.side: SideListener | None = None

    def decider(self, validator: Decider, rpc: str) -> Decider:
        """What the adapter serving `rpc` decides with."""
        counters = self.metrics.decision_counters(rpc) if self.metrics else None
        if counters is None and not self._config.decision_log:
            return validator
        return Observed(validator, rpc, counters, self._config.decision_log)

    def route_denied(self, route: str, refusal: Forbidden, enforced: bool) -> None:
        """A route refused a valid token, or in dry-run would have: counted, and logged in
        the decision log (dry-run denials always: they are what a dry run is for)."""
        if self.metrics:
            self.metrics.route_denied(route, enforced)
        if self._config.decision_log or not enforced:
            fields = {
                "route": route,
                "dry_run": not enforced,
                "reason": refusal.reason.wire,
                "message": refusal.message,
            }
            decision_log.info("route denial", extra={"fields": fields})

    async def open(self, reuse_port: bool = False) -> None:
        """Starts the side listener, if configured; BindError if it cannot listen.
        `reuse_port`: a supervisor's worker, sharing the port with the other workers."""
        if self.metrics and self._config.http_listen:
            side = SideListener(self.metrics.registry, jwks_body(self._config))
            await side.start(self._config.http_listen, reuse_port)
            self.side = side

    def publish(self, config: Config) -> None:
        """Serves the JWK Set of `config`'s signer from now on (a reload may bring a new one)."""
        if self.side:
            self.side.jwks = jwks_body(config)

    def ready(self, ready: bool) -> None:
        if self.side:
            self.side.ready = ready

    async def close(self) -> None:
        if self.side:
            await self.side.close()


class Observed:
    """Decides with `decider`; counts each decision by reason and, if asked, logs it."""

    def __init__(
        self,
        decider: Decider,
        rpc: str,
        counters: Mapping[Reason, Callable[[], None]] | None,
        log_decisions: bool,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._decide = decider.decide
        self._rpc = rpc
        self._counters = counters
        self._log = log_decisions
        self._clock = clock

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        started = self._clock()
        decision = self._decide(token, issuer_audience)
        if self._counters is not None:
            self._counters[decision.reason]()
        if self._log:
            fields = decision_fields(self._rpc, token, decision, self._clock() - started)
            decision_log.info("decision", extra={"fields": fields})
        return decision


def jwks_body(config: Config) -> bytes:
    """`/.well-known/jwks.json`'s body, built once per configuration: Mint's public key."""
    return json.dumps(algorithms.published_jwks(config.signer), separators=(",", ":")).encode()


def decision_fields(rpc: str, token: str, decision: Decision, seconds: float) -> dict[str, object]:
    """The decision log's fields: never the token, a signature or the claims."""
    jti = decision.claims.get("jti")
    iss = decision.claims.get("iss")
    return {
        "rpc": rpc,
        "valid": decision.valid,
        "reason": decision.reason.wire,
        "user_id": decision.user_id or None,
        "token_id": f"jti:{jti}" if isinstance(jti, str) and jti else "sha256:" + token_hash(token),
        "iss": iss if isinstance(iss, str) else None,
        "latency_ms": round(seconds * 1000, 3),
    }


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:TOKEN_HASH_CHARS]
