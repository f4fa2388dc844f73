"""End to end with Electric's own TypeScript client: `@electric-sql/client` (examples/electric,
pinned there) syncs through a real Envoy running examples/envoy/envoy.yaml, with the sidecar doing
Check on shape-scoped tokens minted by examples/gatekeeper.

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
from electric_standin import HANDLE, ElectricStandIn
from gatekeeper import make_handler
from support import (
    MINT_SECRET,
    clean_env,
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
            result = subprocess.run(
                ["node", "--test", "--test-concurrency=1", "--test-force-exit", "shape.test.mjs"],
                cwd=harness,
                env=clean_env(
                    {
                        "ELECTRIC_URL": f"http://127.0.0.1:{envoy.port}/v1/shape",
                        "GATEKEEPER_URL": f"http://127.0.0.1:{keeper.server_port}",
                    }
                ),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            standin.stop()
            envoy.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 6" in result.stdout and "# fail 0" in result.stdout, result.stdout

    # Only the token's own shape reached Electric, always for alice, who the sidecar said it was.
    assert {seen.user for seen in standin.seen} == {"alice"}
    shapes = {(s.params["table"], s.params["where"], s.params["columns"]) for s in standin.seen}
    assert shapes == {("items", "owner = $1", '"id","title"')}
    assert {seen.params["params[1]"] for seen in standin.seen} == {"alice"}
    initial, first_poll, *_ = standin.seen
    assert initial.query == INITIAL_QUERY
    # The live polls that followed carried Electric's protocol parameters, and passed.
    assert first_poll.params["live"] == "true"
    assert first_poll.params["handle"] == HANDLE
    assert first_poll.params["offset"] == "0_0"
    assert first_poll.params["cursor"] == ""  # the initial response had no electric-cursor
    second_poll = standin.seen[2]
    assert (second_poll.params["live"], second_poll.params["handle"]) == ("true", HANDLE)
    assert (second_poll.params["offset"], second_poll.params["cursor"]) == ("1_0", "1")
    print("\n".join(seen.query for seen in standin.seen))  # the encodings, for -s runs


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
