"""Prometheus metrics, on registries of the sidecar's own, in one process or across workers.

Every metric is recorded where its event happens, with prometheus_client's own types, so that it
works the same in both of prometheus_client's modes:
- one process: `/metrics` shows what this process recorded;
- workers (the supervisor sets `PROMETHEUS_MULTIPROC_DIR` for them): each worker records into
  memory-mapped files in that directory, and `/metrics`, whichever worker answers it, shows the
  sum over every worker, the dead ones' counters included (prometheus_client's multiprocess mode).

The per-call label children are bound once, here, so that the hot path only increments or observes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from sidecar import __version__
from sidecar.core.cache import Counters
from sidecar.core.errors import Reason
from sidecar.stores.base import Events

PREFIX: Final = "auth_sidecar"
# prometheus_client's own variable: when set at start-up, its metrics live in files there.
MULTIPROCESS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# Validate and Check take tens of microseconds; Mint with RSA a few milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_KEYS_UPDATED: Final = f"{PREFIX}_jwks_updated_timestamp_seconds"


class Metrics:
    """The sidecar's metrics: decisions by RPC and reason, latency by RPC, calls in flight, the
    decision cache, key set fetches and their age, reloads, and the build.

    `registry` is what `/metrics` shows. `multiprocess_dir`: the directory the workers record
    into (prometheus_client must have seen it in the environment at import, as the supervisor
    arranges); None for one process. `clock` (wall time) gives the key sets' age at a scrape.
    """

    def __init__(
        self, multiprocess_dir: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        recorded = CollectorRegistry(auto_describe=True)
        self._decisions = Counter(
            f"{PREFIX}_decisions",
            "Token decisions, by RPC (Validate, Check), validity and reason",
            ("rpc", "valid", "reason"),
            registry=recorded,
        )
        self._latency = Histogram(
            f"{PREFIX}_rpc_duration_seconds",
            "Time from a call's pickup to its answer, by RPC",
            ("rpc",),
            buckets=LATENCY_BUCKETS,
            registry=recorded,
        )
        self._in_flight = Gauge(
            f"{PREFIX}_rpcs_in_flight",
            "Calls being served right now",
            registry=recorded,
            multiprocess_mode="livesum",
        )
        self._cache = Counter(
            f"{PREFIX}_cache_lookups",
            "Decision cache lookups, by result: hit (served from memory) or miss (verified)",
            ("result",),
            registry=recorded,
        )
        self._fetches = Counter(
            f"{PREFIX}_jwks_fetches",
            "Key set fetches from a URL, by source and result (ok, error)",
            ("source", "result"),
            registry=recorded,
        )
        self._keys_updated = Gauge(
            _KEYS_UPDATED,
            "When each source's key set was last fetched successfully, Unix time "
            "(with workers, the oldest of theirs)",
            ("source",),
            registry=recorded,
            multiprocess_mode="livemin",
        )
        self._route_denials = Counter(
            f"{PREFIX}_route_denials",
            "Valid tokens refused by a route of SIDECAR_CONFIG_FILE (or the default's deny)",
            ("route",),
            registry=recorded,
        )
        self._dry_run_denials = Counter(
            f"{PREFIX}_dry_run_denials",
            "Requests that a route in dry-run would have refused, and let through",
            ("route",),
            registry=recorded,
        )
        self._reloads = Counter(
            f"{PREFIX}_reloads",
            "Configuration reloads (SIGHUP or a changed file), by result (ok, error)",
            ("result",),
            registry=recorded,
        )
        self._revocations = Gauge(
            f"{PREFIX}_revocations_held",
            "Revocations held in memory (with workers, the most any holds)",
            registry=recorded,
            multiprocess_mode="livemax",
        )
        self._revocations_age = Gauge(
            f"{PREFIX}_revocations_sync_age_seconds",
            "Seconds since the revocations were last confirmed with their store (with workers, "
            "the oldest); -1 before the first sync",
            registry=recorded,
            multiprocess_mode="livemax",
        )
        self._revocations_stale = Gauge(
            f"{PREFIX}_revocations_stale",
            "1 while the revocations are older than SIDECAR_REVOCATION_MAX_STALENESS_SECONDS "
            "(closed: valid tokens get UNAVAILABLE; open: decided from the old copy)",
            registry=recorded,
            multiprocess_mode="livemax",
        )
        self._store_errors = Counter(
            f"{PREFIX}_revocation_store_errors",
            "Failed reads, writes and connections of the revocation store",
            registry=recorded,
        )
        self._propagation = Histogram(
            f"{PREFIX}_revocation_propagation_seconds",
            "Time from a revocation's write to the store to its arrival in a worker",
            buckets=LATENCY_BUCKETS,
            registry=recorded,
        )
        Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which build is running",
            ("version",),
            registry=recorded,
            multiprocess_mode="livemax",
        ).labels(__version__).set(1)
        source: Collector = (
            MultiProcessCollector(None, path=multiprocess_dir) if multiprocess_dir else recorded
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_WithKeyAges(source, clock))

    @staticmethod
    def multiprocess_dir() -> str | None:
        """The directory prometheus_client records into, when a supervisor gave one."""
        return os.environ.get(MULTIPROCESS_DIR_ENV) or None

    def meter(self, rpc: str) -> tuple[Callable[[], None], Callable[[float], None]]:
        """For each call of `rpc`: what to call when it starts, and with its duration when done."""
        observe = self._latency.labels(rpc).observe
        entered, left = self._in_flight.inc, self._in_flight.dec

        def done(seconds: float) -> None:
            left()
            observe(seconds)

        return entered, done

    def decision_counters(self, rpc: str) -> Mapping[Reason, Callable[[], None]]:
        """One bound increment per reason for `rpc` (UNSPECIFIED counts the valid decisions)."""
        return {
            reason: self._decisions.labels(
                rpc, str(reason == Reason.UNSPECIFIED).lower(), reason.wire
            ).inc
            for reason in Reason
        }

    def cache_counters(self) -> Counters:
        """The bound increments for a cache hit and a cache miss."""
        return self._cache.labels("hit").inc, self._cache.labels("miss").inc

    def fetched(self, source: str, ok: bool) -> None:
        """One key set fetch from `source` (a URL, as logged) ended, well or not."""
        self._fetches.labels(source, "ok" if ok else "error").inc()
        if ok:
            self._keys_updated.labels(source).set(self._clock())

    def route_denied(self, route: str, enforced: bool) -> None:
        (self._route_denials if enforced else self._dry_run_denials).labels(route).inc()

    def store_events(self) -> Events:
        """What a revocation store reports: its errors, and each revocation's propagation."""
        return Events(error=self._store_errors.inc, applied=self._propagation.observe)

    def revocations(self, held: int, age: float | None, stale: bool) -> None:
        self._revocations.set(held)
        self._revocations_age.set(-1 if age is None else age)
        self._revocations_stale.set(int(stale))

    def reloaded(self, ok: bool) -> None:
        self._reloads.labels("ok" if ok else "error").inc()


class _WithKeyAges:
    """`source`'s metrics, plus each key set's age in seconds, computed at the scrape from when it
    was last fetched (an age is what an alert compares with the refresh interval)."""

    def __init__(self, source: Collector, clock: Callable[[], float]) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        for family in self._source.collect():
            yield family
            if family.name == _KEYS_UPDATED:
                ages = GaugeMetricFamily(
                    f"{PREFIX}_jwks_age_seconds",
                    "Seconds since each source's key set was last fetched successfully",
                    labels=("source",),
                )
                for sample in family.samples:
                    ages.add_metric((sample.labels["source"],), max(now - sample.value, 0.0))
                yield ages
