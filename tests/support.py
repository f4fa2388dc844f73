"""Test helpers: key material, token builders and a real sidecar process.

Signed tokens are built with PyJWT, an independent JWT library, so that the sidecar is never
checked against itself.
"""

from __future__ import annotations

import base64
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidecar import config

ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
HS_SECRET = "s" * 64  # long enough for HS512
MINT_SECRET = "mint-secret-" + "m" * 32  # SIDECAR_MINT_SECRET needs 32+ bytes
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


@cache
def key_pair(alg: str, which: int = 0) -> KeyPair:
    """A key pair for an RS or ES algorithm, made once per test run; `which` picks another."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(_CURVES[alg]())
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
    """Environment for a secure sidecar; RS and ES get a signing key so that Mint works."""
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
    return jwt.encode(dict(claims), _signing_key(alg), algorithm=alg, headers=dict(headers or {}))


@cache
def _signing_key(alg: str) -> Any:
    """The signing key, parsed once: loading an RSA PEM (with its checks) costs tens of ms."""
    if alg.startswith("HS"):
        return HS_SECRET
    return serialization.load_pem_private_key(key_pair(alg).private_pem.encode(), password=None)


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

    def terminate(self, timeout: float = 15) -> int:
        """Sends SIGTERM (if still running), waits, and collects the rest of its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)


StartSidecar = Callable[..., Sidecar]
"""The `sidecar_factory` fixture: `start(env, listen="127.0.0.1:0", args=())`."""

_SERVING = re.compile(r"serving .*listen=(\S+)")


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any AUTH_ or SIDECAR_ variable, plus `env`."""
    full = {
        key: value for key, value in os.environ.items() if not key.startswith(("AUTH_", "SIDECAR_"))
    }
    full.update(env or {})
    return full


def start_sidecar(
    env: Mapping[str, str], listen: str = "127.0.0.1:0", args: Sequence[str] = ()
) -> Sidecar:
    """Starts a sidecar and returns once it has logged that it serves (health is SERVING then).

    The start-up line carries the bound address, so port 0 works without races or sleeps.
    `args` are extra `serve` flags.
    """
    full_env = clean_env(env)
    full_env.setdefault("SIDECAR_LISTEN", listen)
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", *args],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    log: list[str] = []
    for line in process.stderr:
        log.append(line.rstrip("\n"))
        match = _SERVING.search(line)
        if match:
            reader = threading.Thread(target=_read_log, args=(process, log), daemon=True)
            reader.start()
            return Sidecar(process=process, address=match.group(1), log=log, reader=reader)
    process.wait(timeout=10)
    process.stderr.close()
    raise RuntimeError("sidecar exited before serving:\n" + "\n".join(log))


def _read_log(process: subprocess.Popen[str], log: list[str]) -> None:
    assert process.stderr is not None
    with process.stderr:
        for line in process.stderr:
            log.append(line.rstrip("\n"))


@contextmanager
def running(env: Mapping[str, str], listen: str = "127.0.0.1:0") -> Iterator[Sidecar]:
    """A sidecar for a `with` block (or a module-scoped fixture); killed if SIGTERM hangs."""
    sidecar = start_sidecar(env, listen)
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
