"""Envoy's authz cluster over mTLS: a real Envoy with examples/envoy/authz-mtls.yaml added to the
example config, in front of a real sidecar that requires client certificates."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from certs import Authority
from support import (
    ENVOY_EXAMPLE,
    Envoy,
    Upstream,
    example_envoy_config,
    running,
    short_tmp_dir,
    start_envoy,
    unsigned,
)
from test_envoy import ENVOY_ARGS, SHAPE, Reply, bearer, seen, send

SNIPPET = ENVOY_EXAMPLE.with_name("authz-mtls.yaml")
CLUSTER = "      load_assignment:\n        cluster_name: auth_sidecar\n"
SERVER_NAME = "auth-sidecar.local"


def _config(upstream: Upstream, sidecar: str, tls_dir: Path, client_cert: bool) -> str:
    """The example config with the snippet in its auth_sidecar cluster."""
    snippet = SNIPPET.read_text().replace("/etc/envoy/tls/", f"{tls_dir}/")
    if not client_cert:
        start = snippet.index("      tls_certificates:")
        snippet = snippet[:start] + snippet[snippet.index("      validation_context:") :]
    config = example_envoy_config(upstream=f"127.0.0.1:{upstream.port}", sidecar=sidecar)
    assert config.count(CLUSTER) == 1
    return config.replace(CLUSTER, textwrap.indent(snippet, "      ") + CLUSTER)


@pytest.mark.parametrize("client_cert", [True, False], ids=["client-cert", "no-client-cert"])
def test_envoy_reaches_the_sidecar_over_mtls(upstream: Upstream, client_cert: bool) -> None:
    ca = Authority("mesh CA")
    with short_tmp_dir() as directory:
        tls_dir = Path(directory)
        cert, key = ca.server(dns=SERVER_NAME).write(tls_dir, "server")
        ca.client("envoy").write(tls_dir, "client")
        (tls_dir / "ca.crt").write_bytes(ca.pem)
        env = {
            "AUTH_MODE": "insecure",
            "SIDECAR_TLS_CERT_FILE": str(cert),
            "SIDECAR_TLS_KEY_FILE": str(key),
            "SIDECAR_TLS_CLIENT_CA_FILE": str(tls_dir / "ca.crt"),
        }
        with running(env) as sidecar:
            config = _config(upstream, sidecar.address, tls_dir, client_cert)
            envoy = start_envoy(config, directory, ENVOY_ARGS)
            try:
                reply = _first_answer(
                    envoy.port, lambda r: r.status == 200, tries=3 if not client_cert else 50
                )
                handshakes = _stat(envoy, "cluster.auth_sidecar.ssl.handshake")
            finally:
                envoy.stop()
    if client_cert:
        assert seen(reply).headers["x-user-id"] == ["alice"]
        assert handshakes >= 1
    else:  # the handshake fails, the Check with it, and Envoy fails closed
        assert reply.status == 403
        assert handshakes == 0


def _first_answer(port: int, wanted: Callable[[Reply], bool], tries: int) -> Reply:
    """Sends until `wanted` (a cold mTLS connection can outlast Envoy's 0.25 s Check budget on a
    loaded machine, and Envoy then fails closed), at most `tries` times; returns the last reply."""
    for _ in range(tries):
        reply = send(port, SHAPE, [bearer(unsigned({"sub": "alice"}))])
        if wanted(reply):
            break
    return reply


def _stat(envoy: Envoy, name: str) -> int:
    status, text = envoy.admin_get(f"/stats?filter=^{name}$")
    assert status == 200, text
    return int(text.split(":")[1]) if text.strip() else 0
