"""AuthService over Connect, called by clients from outside the project: connect-go
(tests/connect/go), @connectrpc/connect-node and plain fetch() (tests/connect/node), and curl,
each against a real insecure sidecar process's HTTP API. Their assertions run in their own
toolchains; here, that they ran and passed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxies import http_api_address
from support import clean_env, running, unsigned

HERE = Path(__file__).resolve().parent / "connect"
PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
GOOD = unsigned({"user_id": "alice", "role": "admin"})
# A cold `npm ci` or a first `go build` of connect-go and its dependencies (half a minute on two
# cores) does not fit the suite's default timeout of 60 s; their subprocesses are bounded anyway.
SLOW = pytest.mark.timeout(300)


def _toolchain(name: str) -> str:
    """`name` on PATH; a skip without it, a failure under CI=true (CI must run every client)."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {name} is needed for the Connect client tests")
        pytest.skip(f"no {name}: its Connect client cannot run")
    return found


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    env = {"AUTH_MODE": "insecure", "SIDECAR_HTTP_API_LISTEN": "127.0.0.1:0"}
    with running(env, measured=False) as sidecar:
        yield "http://" + http_api_address(sidecar.logged(" http_api="))


def descriptor_set(path: Path) -> Path:
    """authsidecar/v1/auth.proto and its imports, compiled from proto/ (buf.yaml's one module)
    as a FileDescriptorSet: the schema the Node client loads at run time."""
    argv = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", "--include_imports"]
    argv += [f"--descriptor_set_out={path}", "authsidecar/v1/auth.proto"]
    result = run(argv, PROTO_ROOT, {})
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=clean_env(env), capture_output=True, text=True, timeout=300, check=False
    )


@SLOW
def test_connect_node_and_fetch(base_url: str, tmp_path: Path) -> None:
    npm = _toolchain("npm")
    node = _toolchain("node")
    harness = HERE / "node"
    if not (harness / "node_modules" / "@connectrpc" / "connect-node").is_dir():
        installed = run([npm, "ci", "--no-audit", "--no-fund", "--silent"], harness, {})
        assert installed.returncode == 0, installed.stderr
    env = {"SIDECAR_URL": base_url, "GOOD_TOKEN": GOOD}
    env["SIDECAR_DESCRIPTORS"] = str(descriptor_set(tmp_path / "auth.binpb"))
    result = run([node, "--test", "validate.test.mjs"], harness, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 9" in result.stdout and "# fail 0" in result.stdout, result.stdout


@SLOW
def test_connect_go(base_url: str) -> None:
    go = _toolchain("go")
    result = run(
        [go, "test", "-count=1", "./..."],
        HERE / "go",
        {"SIDECAR_URL": base_url, "GOOD_TOKEN": GOOD},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_curl_as_the_readme_shows(base_url: str) -> None:
    """The README's curl, when there is one (no toolchain of its own: never a CI failure)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl")
    body = json.dumps({"token": GOOD})
    argv = [curl, "-sS", "-H", "content-type: application/json", "-d", body]
    result = run([*argv, f"{base_url}/authsidecar.v1.AuthService/Validate"], HERE, {})
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert (decision["valid"], decision["userId"]) == (True, "alice")
    assert decision["claims"] == {"user_id": "alice", "role": "admin"}
