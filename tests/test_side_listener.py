"""The side listener in process, on the HTTP API's server: its routes, a scrape in either
exposition format, and bad input answered and survived (it was a thread of wsgiref before)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from sidecar.observe.side import JWKS_PATH, SideListener


async def _exchange(address: str, data: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def _get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: side", *headers, "connection: close", "", ""]
    return "\r\n".join(lines).encode()


async def test_routes_formats_and_bad_input() -> None:
    registry = CollectorRegistry()
    Counter("probe_total", "a counter to find in the scrape", registry=registry).inc(3)
    side = SideListener(registry, b'{"keys":[]}')
    address = await side.start("127.0.0.1:0")
    try:
        assert (await _exchange(address, _get("/readyz"))).startswith(b"HTTP/1.1 503 ")
        side.ready = True
        assert (await _exchange(address, _get("/readyz"))).endswith(b"\r\n\r\nSERVING\n")
        assert (await _exchange(address, _get("/healthz"))).endswith(b"\r\n\r\nok\n")
        text = await _exchange(address, _get("/metrics"))
        assert b"content-type: text/plain; version=0.0.4" in text
        assert b"\nprobe_total 3.0\n" in text
        openmetrics = await _exchange(
            address, _get("/metrics", "accept: application/openmetrics-text")
        )
        assert b"content-type: application/openmetrics-text" in openmetrics
        assert openmetrics.endswith(b"# EOF\n")
        side.jwks = b'{"keys":[1]}'
        assert (await _exchange(address, _get(JWKS_PATH))).endswith(b'{"keys":[1]}')
        assert (await _exchange(address, _get("/nope"))).startswith(b"HTTP/1.1 404 ")
        assert (await _exchange(address, b"\x16\x03\x01garbage\r\n\r\n")).startswith(
            b"HTTP/1.1 400 "
        )
        assert (await _exchange(address, _get("/healthz"))).startswith(b"HTTP/1.1 200 ")
    finally:
        await side.close()
