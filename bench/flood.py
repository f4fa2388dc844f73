"""Memory under a flood: N concurrent Validate calls of 1 MB each against a real sidecar.

    .venv/bin/python bench/flood.py                  # 500 x 1 MB, one worker
    .venv/bin/python bench/flood.py --calls 50 --smoke

Reports the server's RSS before, its peak (VmHWM) during the flood, and how the calls ended.
A benchmark, not a test: it prints figures and asserts only that the server survived.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile

import grpc
from harness import rss_kib, start_sidecar  # bench/ is on sys.path when run as a script

from authsidecar.v1 import auth_pb2, auth_pb2_grpc


async def flood(address: str, calls: int, size: int, channels: int) -> dict[str, int]:
    token = "a" * size
    opened = [
        grpc.aio.insecure_channel(
            address,
            options=[("grpc.max_send_message_length", -1), ("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(channels)
    ]
    stubs = [auth_pb2_grpc.AuthServiceStub(channel) for channel in opened]

    async def one(i: int) -> str:
        try:
            await stubs[i % channels].Validate(auth_pb2.ValidateRequest(token=token), timeout=60)
        except grpc.aio.AioRpcError as error:
            return error.code().name
        return "OK"

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(calls)))
    finally:
        for channel in opened:
            await channel.close()
    return dict(collections.Counter(outcomes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--size", type=int, default=1_000_000, help="token bytes per call")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    env = {"AUTH_MODE": "insecure", "SIDECAR_WORKERS": str(args.workers)}
    with tempfile.TemporaryDirectory() as directory, start_sidecar(env, directory) as sidecar:
        before = rss_kib(sidecar.pids())
        outcomes = asyncio.run(flood(sidecar.address, args.calls, args.size, args.channels))
        peak = rss_kib(sidecar.pids(), "VmHWM")
        after = rss_kib(sidecar.pids())
        alive = sidecar.process.poll() is None
    report = {
        "calls": args.calls,
        "bytes_per_call": args.size,
        "workers": args.workers,
        "rss_before_mb": round(before / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "rss_after_mb": round(after / 1024, 1),
        "outcomes": outcomes,
    }
    print(json.dumps(report, indent=2))
    assert alive, "the sidecar died under the flood"
    return 0


if __name__ == "__main__":
    sys.exit(main())


async def http_crowd(port: int, token: str, idle: int, slow: int) -> dict[str, float]:
    """`idle` keep-alive connections that each made one forward-auth request, and `slow`
    clients sending their headers a byte every 100 ms; then how long a new client waits."""
    request = f"GET /auth HTTP/1.1\r\nhost: b\r\nauthorization: Bearer {token}\r\n\r\n".encode()
    held: list[asyncio.StreamWriter] = []

    async def one_idle() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await reader.readuntil(b"\r\n\r\n")
        held.append(writer)

    async def one_slow() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        held.append(writer)
        try:
            for byte in request:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)  # a slow client's pace, not synchronisation
        except (ConnectionError, OSError):
            pass  # closed by the server's request timeout, as it should be

    for start in range(0, idle, 200):
        await asyncio.gather(*(one_idle() for _ in range(min(200, idle - start))))
    slow_tasks = [asyncio.create_task(one_slow()) for _ in range(slow)]
    await asyncio.sleep(2)  # let the slow clients get going
    began = asyncio.get_running_loop().time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    status = await reader.readuntil(b"\r\n")
    waited = asyncio.get_running_loop().time() - began
    writer.close()
    for task in slow_tasks:
        task.cancel()
    for each in held:
        each.close()
    return {"new_client_status": float(status.split()[1]), "new_client_ms": waited * 1000}
