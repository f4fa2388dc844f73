"""Prometheus metrics, on a registry of the sidecar's own.

Every label child is bound once, here, so that the hot path only increments or observes.
Components from elsewhere (the JWKS fetcher, the cache, reloads) register their own collectors
on `Metrics.registry`, named `auth_sidecar_*`, and appear on `/metrics` with these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar import __version__
from sidecar.errors import Reason
from sidecar.traffic import Traffic

PREFIX = "auth_sidecar"
# Validate and Check take tens of microseconds; Mint with RSA a few milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    """The sidecar's metrics: decisions by RPC and reason, latency by RPC, calls in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._decisions = Counter(
            f"{PREFIX}_decisions",
            "Token decisions, by RPC (Validate, Check), validity and reason",
            ("rpc", "valid", "reason"),
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{PREFIX}_rpc_duration_seconds",
            "Time from a call's pickup to its answer, by RPC",
            ("rpc",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            f"{PREFIX}_rpcs_in_flight", "Calls being served right now", registry=self.registry
        )
        Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which build is running",
            ("version",),
            registry=self.registry,
        ).labels(__version__).set(1)

    def track(self, traffic: Traffic) -> None:
        """Reports `traffic.active` as the calls in flight, read at each scrape."""
        self._in_flight.set_function(lambda: traffic.active)

    def timer(self, rpc: str) -> Callable[[float], None]:
        """Records one call's duration in seconds for `rpc`."""
        return self._latency.labels(rpc).observe

    def decision_counters(self, rpc: str) -> Mapping[Reason, Callable[[], None]]:
        """One bound increment per reason for `rpc` (UNSPECIFIED counts the valid decisions)."""
        return {
            reason: self._decisions.labels(
                rpc, str(reason == Reason.UNSPECIFIED).lower(), reason.wire
            ).inc
            for reason in Reason
        }
