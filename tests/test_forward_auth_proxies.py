"""End-to-end forward auth: real Envoy (`http_service`) and real nginx (`auth_request`) run the
files in examples/forward-auth/ with only their ports replaced, in front of the upstream echo,
and ask a real sidecar process's HTTP API about every request.

What reached upstream is what the echo answers; whether anything reached it is read from the
echo's request counter, asked directly before and after.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from support import (
    Upstream,
    closed_port,
    running,
    short_tmp_dir,
    start_envoy,
    unsigned,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "forward-auth"
UPSTREAM = "127.0.0.1:3000"
SIDECAR = "127.0.0.1:8081"
ENVOY_ADMIN = "{ address: 127.0.0.1, port_value: 9901 }"
ENVOY_LISTENER = "{ address: 127.0.0.1, port_value: 10000 }"
# The spellings of /v1/shape that GHSA-m4f6-p2j8-rq76 was about, as a client sends them.
SHAPE_PATHS = ("/v1/shape", "//v1//shape/", "/v1/%73hape", "/v1/./shape", "/v1/x/../shape")
GOOD = unsigned({"user_id": "alice", "shape": {"table": "items"}})


def _socket(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{{ address: {host}, port_value: {port} }}"


def _replace_once(text: str, old: str, new: str, name: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"{name} must contain {old} exactly once")
    return text.replace(old, new)


def http_api_address(log_line: str) -> str:
    return log_line.split(" http_api=")[1].split()[0]


def request(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def seq(upstream: Upstream) -> int:
    return int(json.loads(request(upstream.port, "/count")[2])["seq"])


def start_nginx(config: str, directory: str) -> subprocess.Popen[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = Path(directory) / f"nginx-{os.getpid()}-{time.monotonic_ns()}"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(config)
    with (prefix / "error.log").open("w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [binary, "-p", str(prefix), "-c", "nginx.conf"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


def answering(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    """A bounded poll until the proxy answers a request with no token with the sidecar's 401."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with {process.returncode}")
        try:
            if request(port, "/v1/shape")[0] == 401:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy never answered 401")
        time.sleep(0.02)  # paces a bounded poll on a concrete answer


@pytest.fixture(scope="module", params=["envoy", "nginx"])
def proxy(request: pytest.FixtureRequest, upstream: Upstream) -> Iterator[tuple[int, Upstream]]:
    kind = request.param
    if kind == "nginx" and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs nginx (apt-get install nginx-light)")
        pytest.skip("no nginx on this machine")
    env = {"AUTH_MODE": "insecure", "SIDECAR_SHAPE_CLAIM": "shape"}
    env["SIDECAR_HTTP_API_LISTEN"] = "127.0.0.1:0"
    with ExitStack() as stack, short_tmp_dir() as directory:
        sidecar = stack.enter_context(running(env, measured=False))
        api = http_api_address(sidecar.logged(" http_api="))
        up = f"127.0.0.1:{upstream.port}"
        if kind == "envoy":
            text = (EXAMPLES / "envoy-http-service.yaml").read_text()
            name = "envoy-http-service.yaml"
            for old, new in (
                (ENVOY_ADMIN, "{ address: 127.0.0.1, port_value: 0 }"),
                (ENVOY_LISTENER, "{ address: 127.0.0.1, port_value: 0 }"),
                (_socket(UPSTREAM), _socket(up)),
                (_socket(SIDECAR), _socket(api)),
            ):
                text = _replace_once(text, old, new, name)
            envoy = start_envoy(text, directory, ("--concurrency", "1"))
            stack.callback(envoy.stop)
            port, process = envoy.port, envoy.process
        else:
            port = closed_port()
            text = (EXAMPLES / "nginx.conf").read_text()
            for old, new in (
                ("listen 127.0.0.1:10000;", f"listen 127.0.0.1:{port};"),
                (f"server {UPSTREAM};", f"server {up};"),
                (f"server {SIDECAR};", f"server {api};"),
            ):
                text = _replace_once(text, old, new, "nginx.conf")
            process = start_nginx(text, directory)
            stack.callback(_stop, process)
        answering(port, process)
        yield port, upstream


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def upstream_view(body: bytes) -> dict[str, Any]:
    echoed: dict[str, Any] = json.loads(body)
    echoed["header_map"] = {}
    for name, value in echoed["headers"]:
        echoed["header_map"].setdefault(name, []).append(value)
    return echoed


def test_allowed_requests_reach_upstream_as_the_user_whatever_the_client_claims(
    proxy: tuple[int, Upstream],
) -> None:
    port, _ = proxy
    status, _, body = request(
        port,
        "/v1/shape?table=items",
        {"authorization": f"Bearer {GOOD}", "x-user-id": "mallory"},
    )
    assert status == 200
    assert upstream_view(body)["header_map"]["x-user-id"] == ["alice"]


def test_refused_requests_never_reach_upstream(proxy: tuple[int, Upstream]) -> None:
    port, upstream = proxy
    before = seq(upstream)
    missing = request(port, "/v1/shape?table=items", {"x-user-id": "mallory"})
    bad = request(port, "/v1/shape?table=items", {"authorization": "Bearer nope"})
    assert missing[0] == 401
    assert missing[1]["www-authenticate"] == 'Bearer realm="auth-sidecar"'
    assert bad[0] == 401
    assert 'error="invalid_token"' in bad[1]["www-authenticate"]
    assert seq(upstream) == before + 1  # only the count request itself


@pytest.mark.parametrize("path", SHAPE_PATHS)
def test_every_spelling_of_the_shape_path_gets_the_shape_check(
    proxy: tuple[int, Upstream], path: str
) -> None:
    port, upstream = proxy
    auth = {"authorization": f"Bearer {GOOD}"}
    before = seq(upstream)
    assert request(port, f"{path}?table=other", auth)[0] == 403
    assert seq(upstream) == before + 1
    assert request(port, f"{path}?table=items", auth)[0] == 200


def test_a_client_cannot_name_another_request_in_forwarding_headers(
    proxy: tuple[int, Upstream],
) -> None:
    port, _ = proxy
    spoof = {
        "authorization": f"Bearer {GOOD}",
        "x-forwarded-uri": "/v1/shape?table=items",
        "x-forwarded-method": "GET",
        "x-original-uri": "/v1/shape?table=items",
    }
    assert request(port, "/v1/shape?table=other", spoof)[0] == 403


def test_a_preflight_passes_without_a_user(proxy: tuple[int, Upstream]) -> None:
    port, _ = proxy
    status, _, body = request(
        port,
        "/v1/shape?table=items",
        {
            "origin": "https://app.example",
            "access-control-request-method": "GET",
            "x-user-id": "mallory",
        },
        method="OPTIONS",
    )
    assert status == 200
    assert "x-user-id" not in upstream_view(body)["header_map"]
