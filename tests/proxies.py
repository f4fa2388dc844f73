"""The stock proxies of examples/forward-auth/, started from those files with only their ports
replaced, for the tests that run traffic through them (forward auth, Electric's client)."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import start_envoy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "forward-auth"
TRAEFIK_LISTENER = 'address: "127.0.0.1:10000"'
UPSTREAM = "127.0.0.1:3000"
SIDECAR = "127.0.0.1:8081"
ENVOY_ADMIN = "{ address: 127.0.0.1, port_value: 9901 }"
ENVOY_LISTENER = "{ address: 127.0.0.1, port_value: 10000 }"
ELECTRIC_SECRET = "electric-secret-" + "0123456789" * 2
ROOT = Path(__file__).resolve().parent.parent
# Each proxy: how to get it, and where it is when it is not on the PATH.
BINARIES = {
    "nginx": ("apt-get install nginx-light", "/usr/sbin/nginx"),
    "caddy": ("apt-get install caddy", "/usr/bin/caddy"),
    "traefik": ("scripts/build-traefik", str(ROOT / ".tools" / "bin" / "traefik")),
}


def _socket(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{{ address: {host}, port_value: {port} }}"


def replace_once(text: str, old: str, new: str, name: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"{name} must contain {old} exactly once")
    return text.replace(old, new)


def http_api_address(log_line: str) -> str:
    return log_line.split(" http_api=")[1].split()[0]


def send(
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


def start_nginx(
    config: str, directory: str, files: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """nginx with `config`, and `files` beside it (names relative to its prefix)."""
    nginx = binary("nginx")
    # Started as root, nginx's workers run as `nobody`: they must reach the prefix (for the cache).
    os.chmod(directory, 0o755)
    prefix = Path(directory) / f"nginx-{os.getpid()}-{time.monotonic_ns()}"
    prefix.mkdir(mode=0o755)
    (prefix / "nginx.conf").write_text(config)
    for name, text in (files or {}).items():
        (prefix / name).write_text(text)
    with (prefix / "error.log").open("w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", "nginx.conf"],
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
            if send(port, "/v1/shape")[0] == 401:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy never answered 401")
        time.sleep(0.02)  # paces a bounded poll on a concrete answer


def binary(kind: str) -> str:
    """The proxy's binary; a skip where there is none, a failure with CI=true."""
    package, fallback = BINARIES[kind]
    found = shutil.which(kind) or (fallback if Path(fallback).exists() else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs {kind} ({package})")
        pytest.skip(f"no {kind} on this machine")
    return found


def start_envoy_example(directory: str, up: str, api: str) -> tuple[int, Any]:
    """examples/forward-auth/envoy-http-service.yaml; returns its port and the Envoy."""
    text = example(
        "envoy-http-service.yaml",
        (ENVOY_ADMIN, "{ address: 127.0.0.1, port_value: 0 }"),
        (ENVOY_LISTENER, "{ address: 127.0.0.1, port_value: 0 }"),
        (_socket(UPSTREAM), _socket(up)),
        (_socket(SIDECAR), _socket(api)),
    )
    envoy = start_envoy(text, directory, ("--concurrency", "1"))
    return envoy.port, envoy


def example(name: str, *replacements: tuple[str, str]) -> str:
    """examples/forward-auth/`name`, with each (old, new) replaced where `old` is, once."""
    text = (EXAMPLES / name).read_text()
    for old, new in replacements:
        text = replace_once(text, old, new, name)
    return text


def _spawn(argv: list[str], home: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`argv` in `home`, its output in `home`/proxy.log (the child keeps its own copy)."""
    with (home / "proxy.log").open("w") as log:
        return subprocess.Popen(
            argv, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, text=True
        )


def start_nginx_example(directory: str, port: int, up: str, api: str) -> subprocess.Popen[str]:
    """examples/forward-auth/nginx.conf on `port`, in front of `up`, asking the sidecar `api`."""
    text = example(
        "nginx.conf",
        ("listen 127.0.0.1:10000;", f"listen 127.0.0.1:{port};"),
        (f"server {UPSTREAM};", f"server {up};"),
        (f"server {SIDECAR};", f"server {api};"),
    )
    secret = f'set $electric_secret "{ELECTRIC_SECRET}";\n'
    return start_nginx(text, directory, {"electric-secret.conf": secret})


def start_caddy_example(directory: str, port: int, up: str, api: str) -> subprocess.Popen[str]:
    """examples/forward-auth/Caddyfile on `port`, in front of `up`, asking the sidecar `api`."""
    text = example(
        "Caddyfile",
        ("http://127.0.0.1:10000 {", f"http://127.0.0.1:{port} {{"),
        (f"reverse_proxy {UPSTREAM}", f"reverse_proxy {up}"),
        (f"reverse_proxy {SIDECAR} {{", f"reverse_proxy {api} {{"),
    )
    home = Path(directory) / "caddy"
    home.mkdir()
    (home / "Caddyfile").write_text(text)
    # Caddy keeps state under $HOME (or XDG's dirs): here, not in the user's own.
    env = {**os.environ, "HOME": str(home), "ELECTRIC_SECRET": ELECTRIC_SECRET}
    env.update(XDG_DATA_HOME=str(home), XDG_CONFIG_HOME=str(home))
    return _spawn(
        [binary("caddy"), "run", "--config", "Caddyfile", "--adapter", "caddyfile"], home, env
    )


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_traefik_example(directory: str, port: int, up: str, api: str) -> subprocess.Popen[str]:
    """examples/forward-auth/traefik.yml (and its dynamic file) on `port`, in front of `up`,
    asking the sidecar `api`."""
    home = Path(directory) / "traefik"
    home.mkdir()
    static = example("traefik.yml", (TRAEFIK_LISTENER, f'address: "127.0.0.1:{port}"'))
    dynamic = example(
        "traefik-dynamic.yml",
        (f"http://{UPSTREAM}", f"http://{up}"),
        (f"http://{SIDECAR}/", f"http://{api}/"),
    )
    (home / "traefik.yml").write_text(static)
    (home / "traefik-dynamic.yml").write_text(dynamic)
    return _spawn([binary("traefik"), "--configFile=traefik.yml"], home)
