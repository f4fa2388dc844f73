"""End to end with Electric's own TypeScript client: `@electric-sql/client` (examples/electric,
pinned there) syncs through a real Envoy running examples/envoy/envoy.yaml, with the sidecar doing
Check on shape-scoped tokens minted by examples/gatekeeper; and through stock Caddy's
forward_auth (examples/forward-auth/Caddyfile), which adds Electric's secret.

Five parts, all real: a secure sidecar process (SIDECAR_SHAPE_CLAIM=shape), the gatekeeper and a
stand-in for Electric's `/v1/shape` (tests/electric_standin.py) in process, Envoy, and
`node --test examples/electric/`, whose assertions run inside Node. What reached the stand-in is
then checked here: only the token's shape, encoded exactly as the client encodes it, and its
live polls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from electric_standin import HANDLE, ElectricStandIn, Seen
from gatekeeper import make_handler
from proxies import (
    ELECTRIC_SECRET,
    answering,
    binary,
    http_api_address,
    send,
    start_caddy_example,
    stop,
)
from support import (
    MINT_SECRET,
    clean_env,
    closed_port,
    example_envoy_config,
    running,
    secure_env,
    short_tmp_dir,
    start_envoy,
    warm_authz,
)

from authsidecar import AuthClient

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "examples" / "electric"
# The client's request for the gatekeeper's shape: parameters sorted, `where` form-encoded (spaces
# as `+`), columns as quoted identifiers joined by commas, params as `params[n]`.
INITIAL_QUERY = (
    "columns=%22id%22%2C%22title%22&log=full&offset=-1&params%5B1%5D=alice&table=items"
    "&where=owner+%3D+%241"
)


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: npm is needed for the Electric client suite")
        pytest.skip("no npm: Electric's TypeScript client cannot run")
    return npm


@pytest.fixture(scope="module")
def harness() -> Path:
    """examples/electric with its locked dependencies installed (`npm ci` on a fresh machine)."""
    npm = _npm()
    if not (HARNESS / "node_modules" / "@electric-sql" / "client").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=HARNESS, check=True, timeout=300
        )
    return HARNESS


def test_electric_shape_stream_through_envoy(harness: Path) -> None:
    env = secure_env("HS256", SIDECAR_MINT_SECRET=MINT_SECRET, SIDECAR_SHAPE_CLAIM="shape")
    standin = ElectricStandIn()
    with (
        running(env) as sidecar,
        AuthClient(sidecar.address) as auth,
        short_tmp_dir() as directory,
        Serving(ThreadingHTTPServer(("127.0.0.1", 0), make_handler(auth, MINT_SECRET))) as keeper,
    ):
        config = example_envoy_config(upstream=f"127.0.0.1:{standin.port}", sidecar=sidecar.address)
        envoy = start_envoy(config, directory, ("--concurrency", "1"))
        try:
            warm_authz(envoy)
            result = shape_tests(harness, envoy.port, keeper.server_port)
        finally:
            standin.stop()
            envoy.stop()
    assert_synced(result, standin.seen, INITIAL_QUERY)


def test_electric_shape_stream_through_caddy_with_electric_secret(harness: Path) -> None:
    """Stock Caddy's forward_auth (examples/forward-auth/Caddyfile) in front of an Electric that
    refuses a missing or wrong secret: Caddy adds it, the client never holds it."""
    binary("caddy")
    env = secure_env("HS256", SIDECAR_MINT_SECRET=MINT_SECRET, SIDECAR_SHAPE_CLAIM="shape")
    env |= {"SIDECAR_HTTP_API_LISTEN": "127.0.0.1:0", "SIDECAR_ELECTRIC_SECRET": ELECTRIC_SECRET}
    standin = ElectricStandIn(secret=ELECTRIC_SECRET)
    with (
        running(env) as sidecar,
        AuthClient(sidecar.address) as auth,
        short_tmp_dir() as directory,
        Serving(ThreadingHTTPServer(("127.0.0.1", 0), make_handler(auth, MINT_SECRET))) as keeper,
    ):
        api = http_api_address(sidecar.logged(" http_api="))
        port = closed_port()
        caddy = start_caddy_example(directory, port, f"127.0.0.1:{standin.port}", api)
        try:
            answering(port, caddy)
            result = shape_tests(harness, port, keeper.server_port)
            # The stand-in does refuse what Electric refuses: no secret, or a wrong one.
            for query in ("table=items", "table=items&secret=guess"):
                assert send(standin.port, f"/v1/shape?{query}")[0] == 401
        finally:
            standin.stop()
            stop(caddy)
    admitted = [seen for seen in standin.seen if standin.admits(seen.params)]
    assert len(admitted) == len(standin.seen) - 2  # only the two direct requests above
    assert_synced(result, admitted, f"{INITIAL_QUERY}&secret={ELECTRIC_SECRET}")


def shape_tests(
    harness: Path, proxy_port: int, keeper_port: int
) -> subprocess.CompletedProcess[str]:
    """examples/electric's `node --test`, syncing through the proxy on `proxy_port`."""
    return subprocess.run(
        ["node", "--test", "--test-concurrency=1", "--test-force-exit", "shape.test.mjs"],
        cwd=harness,
        env=clean_env(
            {
                "ELECTRIC_URL": f"http://127.0.0.1:{proxy_port}/v1/shape",
                "GATEKEEPER_URL": f"http://127.0.0.1:{keeper_port}",
            }
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_synced(
    result: subprocess.CompletedProcess[str], seen: list[Seen], initial_query: str
) -> None:
    """The client's tests passed, and only the token's own shape reached Electric, always for
    alice, who the sidecar said it was; the live polls carried Electric's protocol parameters."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 6" in result.stdout and "# fail 0" in result.stdout, result.stdout
    assert {one.user for one in seen} == {"alice"}
    shapes = {(s.params["table"], s.params["where"], s.params["columns"]) for s in seen}
    assert shapes == {("items", "owner = $1", '"id","title"')}
    assert {one.params["params[1]"] for one in seen} == {"alice"}
    initial, first_poll, second_poll, *_ = seen
    assert initial.query == initial_query
    assert first_poll.params["live"] == "true"
    assert first_poll.params["handle"] == HANDLE
    assert first_poll.params["offset"] == "0_0"
    assert first_poll.params["cursor"] == ""  # the initial response had no electric-cursor
    assert (second_poll.params["live"], second_poll.params["handle"]) == ("true", HANDLE)
    assert (second_poll.params["offset"], second_poll.params["cursor"]) == ("1_0", "1")
    print("\n".join(one.query for one in seen))  # the encodings, for -s runs


class Serving:
    """Runs an in-process HTTP server on a daemon thread for a `with` block."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self) -> ThreadingHTTPServer:
        self._thread.start()
        return self._server

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
