"""Load-tests Validate with h2load (Debian's nghttp2-client) against a real sidecar process.

    .venv/bin/python bench/validate.py --alg HS256 --requests 20000 --clients 8 --streams 16
    .venv/bin/python bench/validate.py --smoke      # a few hundred calls: what CI runs

h2load counts any HTTP 200 as a success, so the script first checks, with the Python client, that
the token it sends is valid, and afterwards that the server still answers with a valid decision.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authsidecar import AuthClient
from authsidecar.v1 import auth_pb2

_CURVES = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alg", default="HS256", help="HS*, RS*, ES* or 'insecure'")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams per client")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--smoke", action="store_true", help="500 requests, 2 clients")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.clients, args.streams = 500, 2, 4
    if shutil.which("h2load") is None:
        print("bench: h2load not found (apt-get install nghttp2-client)", file=sys.stderr)
        return 2

    env = {**os.environ, **_config(args.alg), "SIDECAR_LISTEN": args.listen}
    env["SIDECAR_LOG_LEVEL"] = "info"
    ready = Path(tempfile.mkdtemp(prefix="bench-")) / "address"
    server = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--ready-file", str(ready)], env=env
    )
    try:
        address = _wait_for_address(server, ready)
        token = subprocess.run(
            [sys.executable, "-m", "sidecar", "mint", "bench-user", "--ttl", "1h"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        with AuthClient(address) as client:
            assert client.validate(token).valid, "the bench token must be valid"
        body = auth_pb2.ValidateRequest(token=token).SerializeToString()
        frame = b"\x00" + len(body).to_bytes(4, "big") + body
        with tempfile.NamedTemporaryFile(suffix=".bin") as data:
            Path(data.name).write_bytes(frame)
            result = subprocess.run(
                [
                    "h2load",
                    "-n",
                    str(args.requests),
                    "-c",
                    str(args.clients),
                    "-m",
                    str(args.streams),
                    "-d",
                    data.name,
                    "-H",
                    "content-type: application/grpc",
                    "-H",
                    "te: trailers",
                    f"http://{address}/authsidecar.v1.AuthService/Validate",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        with AuthClient(address) as client:
            assert client.validate(token).valid, "the server must still decide correctly"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(ready.parent, ignore_errors=True)
    _report(args.alg, result.stdout)
    return 0


def _config(alg: str) -> dict[str, str]:
    if alg == "insecure":
        return {"AUTH_MODE": "insecure"}
    if alg.startswith("HS"):
        return {"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": "b" * 64}
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg.startswith("RS")
        else ec.generate_private_key(_CURVES[alg])
    )
    return {
        "AUTH_JWT_ALG": alg,
        "AUTH_JWT_KEY": private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "AUTH_JWT_SIGNING_KEY": private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }


def _wait_for_address(server: subprocess.Popen[bytes], ready: Path, timeout: float = 30) -> str:
    """The address the sidecar writes to its --ready-file once it serves (a bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return ready.read_text().strip()
        except FileNotFoundError:
            pass
        try:
            server.wait(0.01)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"the sidecar exited ({server.returncode}) before serving")
    raise RuntimeError(f"the sidecar did not serve within {timeout}s")


def _report(alg: str, output: str) -> None:
    wanted = ("finished in", "requests:", "status codes:", "time for request:")
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith(wanted)]
    print(f"bench validate alg={alg}")
    print("\n".join(lines))
    if "0 failed" not in output or "0 errored" not in output:
        raise SystemExit("bench: some requests failed")


if __name__ == "__main__":
    sys.exit(main())
