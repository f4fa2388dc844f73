"""TLS and mTLS on the gRPC listener: real handshakes with certificates made in the test."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certs import Authority, Issued
from support import StartSidecar, clean_env, unsigned

from authsidecar.client import AuthClient
from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import config
from sidecar.core.errors import ConfigError
from sidecar.keys import tls

INSECURE = {"AUTH_MODE": "insecure"}


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority("test CA")


@pytest.fixture(scope="module")
def stranger() -> Authority:
    """A CA nobody trusts."""
    return Authority("stranger CA")


@pytest.fixture
def files(tmp_path: Path, ca: Authority) -> Iterator[dict[str, str]]:
    """Server certificate and key from `ca`, and `ca` itself as the client CA, as variables."""
    cert, key = ca.server().write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    yield {
        "SIDECAR_TLS_CERT_FILE": str(cert),
        "SIDECAR_TLS_KEY_FILE": str(key),
        "SIDECAR_TLS_CLIENT_CA_FILE": str(tmp_path / "ca.crt"),
    }


def _tls_only(files: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in files.items() if k != "SIDECAR_TLS_CLIENT_CA_FILE"}


def _validate(
    address: str,
    root: bytes | None,
    client: Issued | None = None,
) -> auth_pb2.ValidateResponse:
    if root is None:
        channel = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(
            root,
            client.key_pem if client else None,
            client.cert_pem if client else None,
        )
        channel = grpc.secure_channel(address, credentials)
    with channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        return stub.Validate(auth_pb2.ValidateRequest(token=unsigned({"sub": "tls"})), timeout=10)


def _refused(address: str, root: bytes | None, client: Issued | None = None) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _validate(address, root, client)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_handshake(
    sidecar_factory: StartSidecar, files: dict[str, str], ca: Authority, stranger: Authority
) -> None:
    sidecar = sidecar_factory({**INSECURE, **_tls_only(files)})
    assert _validate(sidecar.address, ca.pem).user_id == "tls"
    _refused(sidecar.address, None)  # plaintext
    _refused(sidecar.address, stranger.pem)  # a client that does not trust the certificate
    assert "transport=tls" in sidecar.logged(" serving ")


def test_the_python_client_takes_a_ca_and_a_client_certificate(
    sidecar_factory: StartSidecar, files: dict[str, str], ca: Authority
) -> None:
    sidecar = sidecar_factory({**INSECURE, **files})
    mine = ca.client("py")
    credentials = grpc.ssl_channel_credentials(ca.pem, mine.key_pem, mine.cert_pem)
    with AuthClient(sidecar.address, credentials=credentials) as client:
        assert client.validate(unsigned({"sub": "py"})).user_id == "py"


def test_mtls_refuses_a_client_without_a_certificate(
    sidecar_factory: StartSidecar, files: dict[str, str], ca: Authority, stranger: Authority
) -> None:
    sidecar = sidecar_factory({**INSECURE, **files})
    assert "transport=mtls" in sidecar.logged(" serving ")
    _refused(sidecar.address, ca.pem)
    _refused(sidecar.address, ca.pem, stranger.client())
    assert _validate(sidecar.address, ca.pem, ca.client()).user_id == "tls"


def _health(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "health", "--target", address, *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_health_probe_over_mtls(
    sidecar_factory: StartSidecar, files: dict[str, str], ca: Authority, tmp_path: Path
) -> None:
    sidecar = sidecar_factory({**INSECURE, **files})
    cert, key = ca.client().write(tmp_path, "probe")
    ca_file = files["SIDECAR_TLS_CLIENT_CA_FILE"]
    ok = _health(
        sidecar.address, "--ca-file", ca_file, "--cert-file", str(cert), "--key-file", str(key)
    )
    assert (ok.returncode, ok.stdout) == (0, f"{sidecar.address}: SERVING\n"), ok.stderr
    no_cert = _health(sidecar.address, "--ca-file", ca_file)
    assert no_cert.returncode == 1
    assert no_cert.stderr.startswith(f"{sidecar.address}: UNAVAILABLE")
    half = _health(sidecar.address, "--ca-file", ca_file, "--cert-file", str(cert))
    assert (half.returncode, half.stderr) == (
        2,
        "health: --cert-file and --key-file go together\n",
    )


def test_a_renewed_certificate_is_served_without_a_restart(
    sidecar_factory: StartSidecar, files: dict[str, str], ca: Authority, tmp_path: Path
) -> None:
    """The files are replaced the way Kubernetes updates a Secret: renamed into place."""
    sidecar = sidecar_factory({**INSECURE, **_tls_only(files)})
    assert _validate(sidecar.address, ca.pem).valid
    renewed = Authority("renewing CA")
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    cert, key = renewed.server().write(new_dir, "server")
    key.replace(files["SIDECAR_TLS_KEY_FILE"])
    cert.replace(files["SIDECAR_TLS_CERT_FILE"])
    assert _validate(sidecar.address, renewed.pem).valid  # the next handshake re-reads them
    _refused(sidecar.address, ca.pem)
    sidecar.logged("TLS certificates reloaded")


def test_a_change_that_does_not_load_keeps_the_certificate_and_warns_once(
    files: dict[str, str], ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    certificates = tls.Certificates(tls.TlsFiles(**_paths(files)))
    assert certificates.fetch() is None  # unchanged
    Path(files["SIDECAR_TLS_CERT_FILE"]).write_bytes(ca.client().cert_pem)  # key does not match
    with caplog.at_level(logging.WARNING, logger="sidecar.tls"):
        assert certificates.fetch() is None
        assert certificates.fetch() is None
    (warning,) = caplog.messages
    assert "SIDECAR_TLS_KEY_FILE" in warning and "is not the key of the certificate" in warning
    assert "PRIVATE KEY" not in warning


def _paths(files: dict[str, str]) -> dict[str, str]:
    return {
        "cert_file": files["SIDECAR_TLS_CERT_FILE"],
        "key_file": files["SIDECAR_TLS_KEY_FILE"],
        "client_ca_file": files["SIDECAR_TLS_CLIENT_CA_FILE"],
    }


def _problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        config.load({**INSECURE, **env})
    return raised.value.problems


def test_config_problems_name_their_variable(
    files: dict[str, str], ca: Authority, tmp_path: Path
) -> None:
    cert, key = files["SIDECAR_TLS_CERT_FILE"], files["SIDECAR_TLS_KEY_FILE"]
    assert _problems({"SIDECAR_TLS_CERT_FILE": cert}) == [
        "SIDECAR_TLS_KEY_FILE: is required with SIDECAR_TLS_CERT_FILE"
    ]
    assert _problems({"SIDECAR_TLS_CLIENT_CA_FILE": cert}) == [
        "SIDECAR_TLS_CLIENT_CA_FILE: needs SIDECAR_TLS_CERT_FILE and SIDECAR_TLS_KEY_FILE"
    ]
    other_key = ca.server().write(tmp_path, "other")[1]
    missing = tmp_path / "missing.crt"
    assert _problems(
        {
            "SIDECAR_TLS_CERT_FILE": str(missing),
            "SIDECAR_TLS_KEY_FILE": cert,
            "SIDECAR_TLS_CLIENT_CA_FILE": key,
        }
    ) == [
        f"SIDECAR_TLS_CERT_FILE: cannot read {missing}: No such file or directory",
        f"SIDECAR_TLS_KEY_FILE: {cert} holds no unencrypted PEM private key",
        f"SIDECAR_TLS_CLIENT_CA_FILE: {key} holds no PEM certificate",
    ]
    assert _problems({"SIDECAR_TLS_CERT_FILE": cert, "SIDECAR_TLS_KEY_FILE": str(other_key)}) == [
        f"SIDECAR_TLS_KEY_FILE: {other_key} is not the key of the certificate in {cert}"
    ]


def test_plaintext_beyond_loopback_warns(sidecar_factory: StartSidecar) -> None:
    wide = sidecar_factory(INSECURE, listen="0.0.0.0:0")
    wide.logged("serves plaintext beyond loopback")
    local = sidecar_factory(INSECURE)
    local.logged(" serving ")  # logged after the warning would have been
    assert not any("beyond loopback" in line for line in local.log)
