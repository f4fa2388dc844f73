"""Per-route authorization, in process: what `[[routes]]` add to a decision already made.

    .venv/bin/python bench/routes.py             # about 2 s per measurement
    .venv/bin/python bench/routes.py --smoke     # a fraction of a second each: what CI runs

- one route decision: `Routes.select` over five routes plus `Route.unmet` on a real Decision,
  for a route with `scopes_all` and a claims `contains` test (target: 5 µs or less) and for
  the last route, a CEL `when` (target: 20 µs or less), evaluated each time (distinct queries)
  and with its answer kept (one request); best of several repeats;
- Check (Envoy ext_authz, called in one asyncio loop, same token so the decision cache hits)
  with those five routes, the request on the CEL one, against Check with no routes; rounds of
  the two interleave, medians compared. In process this is the routes' cost beside a bare
  2-3 µs Check; the target (a ratio of 0.9 or more) is judged where Check is served, over
  gRPC: bench/run.py --only check, "sidecar Check RS256, 5 routes" beside "sidecar Check RS256".

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2

from sidecar import config
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.core import rules
from sidecar.core.validator import Decision
from sidecar.runtime import server

ROUTES = """
[[routes]]
name = "health"
path = "/health"
anonymous = true
[[routes]]
name = "admin"
path_prefix = "/admin"
scopes_all = ["admin:write"]
[[routes.claims]]
path = "realm_access.roles"
contains = "analyst"
[[routes]]
name = "reports"
path_prefix = "/reports"
methods = ["GET"]
[[routes]]
name = "beta"
path_prefix = "/beta"
scopes_any = ["beta"]
[[routes]]
name = "shapes"
path_prefix = "/v1/shape"
when = 'request.method == "GET" && "sync" in claims.scp && request.query.table == "items"'
"""
CLAIMS = {
    "user_id": "alice",
    "scp": ["sync", "admin:write"],
    "realm_access": {"roles": ["analyst"]},
}
REPEATS = 5
Run = Callable[[int], int]
"""Runs `number` calls; returns the nanoseconds they took."""


def unsigned(claims: dict[str, Any]) -> str:
    """`header.payload.`: an `alg: none` token, valid in insecure mode."""
    parts = ({"alg": "none", "typ": "JWT"}, claims)
    encoded = (base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in parts)
    return b".".join(encoded).decode() + "."


def autorange(run: Run, seconds: float) -> int:
    """Calls per loop, doubled (as timeit's autorange) until one loop takes `seconds`."""
    number = 1
    while run(number) < seconds * 1e9:
        number *= 2
    return number


def decision_us(
    routes: rules.Routes, decision: Decision, method: str, targets: list[str], seconds: float
) -> float:
    """µs per `select` + `unmet` over `targets` in turn: the best of REPEATS loops of about
    `seconds / REPEATS`. More distinct targets than the condition memo holds: each evaluates."""
    headers = {"host": "app", "authorization": "Bearer x", "user-agent": "bench"}
    requests = [rules.Request(method, t, "app", headers, rules.HIDDEN_HEADERS) for t in targets]
    for request in requests:
        route = routes.select(method, request.path, "app")
        assert route.unmet(decision, request) is None, f"route {route.name} refuses the token"
    cycle = len(requests)

    def run(number: int) -> int:
        start = time.perf_counter_ns()
        for i in range(number):
            request = requests[i % cycle]
            routes.select(method, request.path, "app").unmet(decision, request)
        return time.perf_counter_ns() - start

    number = autorange(run, seconds / REPEATS)
    return min(run(number) for _ in range(REPEATS)) / number / 1000


def check_rates(
    checks: dict[str, EnvoyAuthorization], token: str, seconds: float
) -> dict[str, float]:
    """Check calls/s of each, in one asyncio loop: the median of 2 * REPEATS interleaved rounds."""
    message = external_auth_pb2.CheckRequest()
    http = message.attributes.request.http
    http.method, http.path, http.host = "GET", "/v1/shape?table=items&offset=-1", "app"
    http.headers.update({"authorization": f"Bearer {token}", "user-agent": "bench"})
    loop = asyncio.new_event_loop()

    async def calls(check: EnvoyAuthorization, number: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(number):
            await check.Check(message, None)  # type: ignore[arg-type]
        return time.perf_counter_ns() - start

    def run_of(check: EnvoyAuthorization) -> Run:
        return lambda number: loop.run_until_complete(calls(check, number))

    runs: dict[str, Run] = {}
    for name, check in checks.items():
        response = loop.run_until_complete(check.Check(message, None))  # type: ignore[arg-type]
        assert response.status.code == 0, f"Check with {name} refuses the request"
        runs[name] = run_of(check)
    rounds = 2 * REPEATS
    numbers = {name: autorange(run, seconds / rounds / len(runs)) for name, run in runs.items()}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            rates[name].append(numbers[name] / run(numbers[name]) * 1e9)
    loop.close()
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a fraction of a second each")
    seconds = 0.2 if parser.parse_args().smoke else 2.0
    token = unsigned(CLAIMS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "routes.toml"
        path.write_text(ROUTES)
        routed = config.load({"AUTH_MODE": "insecure", "SIDECAR_CONFIG_FILE": str(path)})
    plain = config.load({"AUTH_MODE": "insecure"})
    decision = config.build_validator(routed).decide(token)
    assert decision.valid, decision.message
    no_cel = decision_us(routed.routes, decision, "POST", ["/admin/users"], seconds)
    shape = "/v1/shape?table=items&offset="
    cel_kept = decision_us(routed.routes, decision, "GET", [shape + "-1"], seconds)
    distinct = [f"{shape}{i}" for i in range(4 * rules.MEMO_SIZE)]
    cel = decision_us(routed.routes, decision, "GET", distinct, seconds)
    checks = {"no routes": server.assemble(plain)[1], "5 routes": server.assemble(routed)[1]}
    rates = check_rates(checks, token, seconds)
    ratio = rates["5 routes"] / rates["no routes"]
    rows = [
        ("route decision, scopes_all + claims", f"{no_cel:.2f} µs", "≤ 5 µs"),
        ("route decision, CEL when (5th route)", f"{cel:.2f} µs", "≤ 20 µs"),
        ("  the same, its answer kept (memo)", f"{cel_kept:.2f} µs", ""),
        ("Check, no routes", f"{rates['no routes']:,.0f} /s", ""),
        ("Check, 5 routes (CEL one matched)", f"{rates['5 routes']:,.0f} /s", ""),
        ("Check ratio in process, 5 routes / none", f"{ratio:.3f}", "(over gRPC: ≥ 0.9)"),
    ]
    print(f"{'measurement':<40} {'measured':>14}  target")
    for row in rows:
        print(f"{row[0]:<40} {row[1]:>14}  {row[2]}")


if __name__ == "__main__":
    main()
