"""The ceilings the sidecar is measured against: grpc.aio servers that decide nothing.

    python bench/baseline.py --listen 127.0.0.1:0 --workers 2 --ready-file /tmp/ready

One server answers both `authsidecar.v1.AuthService/Validate` (the project's stubs: it decodes the
request and sends a constant valid response) and Envoy's `Authorization/Check` (a constant OK):
the framework's ceiling and the ext_authz hop's ceiling. With `--workers N` it runs N processes on
one port with SO_REUSEPORT, as the sidecar's workers do.

With `--least-miss`, Validate does instead the least work a cache miss can be in Python: split the
token, check its HS256 signature (the secret from `BENCH_HS_SECRET`), decode the payload and answer
with its claims. It checks no claim rule and no strictness: the ceiling of any Python miss path.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar.runtime import eventloop
from sidecar.runtime.server import write_ready_file

VALID = auth_pb2.ValidateResponse(valid=True, user_id="bench-user")
INVALID = auth_pb2.ValidateResponse(valid=False)
ALLOWED = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=code_pb2.OK), ok_response=external_auth_pb2.OkHttpResponse()
)


class Auth(auth_pb2_grpc.AuthServiceServicer):
    async def Validate(self, request: Any, context: Any) -> auth_pb2.ValidateResponse:  # noqa: N802
        return VALID

    async def Mint(self, request: Any, context: Any) -> auth_pb2.MintResponse:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the baseline does not mint")
        raise AssertionError("abort raises")

    async def Revoke(self, request: Any, context: Any) -> auth_pb2.RevokeResponse:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the baseline does not revoke")
        raise AssertionError("abort raises")


class LeastMiss(Auth):
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    async def Validate(self, request: Any, context: Any) -> auth_pb2.ValidateResponse:  # noqa: N802
        header, payload, signature = request.token.split(".")
        mac = hmac.digest(self._secret, f"{header}.{payload}".encode(), "sha256")
        if not hmac.compare_digest(mac, base64.urlsafe_b64decode(signature + "=")):
            return INVALID
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        response = auth_pb2.ValidateResponse(valid=True, user_id=claims["sub"])
        response.claims.update(claims)
        response.expires_at.seconds = claims["exp"]
        return response


class Check(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        return ALLOWED


async def serve(listen: str, ready: Path, least_miss: bool) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    auth = LeastMiss(os.environ["BENCH_HS_SECRET"].encode()) if least_miss else Auth()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Check(), server)
    port = server.add_insecure_port(listen)
    await server.start()
    # Atomically: the launcher polls for the file and must never read it half written.
    write_ready_file(str(ready), f"{listen.rpartition(':')[0]}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--least-miss", action="store_true", help="Validate checks HS256 tokens")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    stops = {signal.SIGTERM, signal.SIGINT}
    if args.child or args.workers == 1:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)  # a child inherits the parent's mask
        # The sidecar's own default loop, so that the ceiling is measured on the same footing.
        eventloop.runner("auto")(serve(args.listen, args.ready_file, args.least_miss))
        return 0
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # taken by sigwait below
    host, _, port = args.listen.rpartition(":")
    # Hold the port (SO_REUSEPORT, never listening) so that every child binds the same one.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, int(port)))
    address = f"{host}:{holder.getsockname()[1]}"
    with tempfile.TemporaryDirectory() as directory:
        readies = [Path(directory) / str(i) for i in range(args.workers)]
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", "--listen", address, "--ready-file", str(r)]
                + (["--least-miss"] if args.least_miss else [])
            )
            for r in readies
        ]
        while not all(r.exists() for r in readies):  # a bounded wait: children exit on error
            if any(child.poll() is not None for child in children):
                raise SystemExit("a baseline worker failed to start")
            time.sleep(0.02)
        write_ready_file(str(args.ready_file), address)
        signal.sigwait(stops)
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
    holder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
