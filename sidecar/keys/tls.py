"""TLS for the gRPC listener: server credentials from PEM files, re-read when they change.

The files are checked at start-up (a bad file is a config error naming its variable). After
that, gRPC asks for the certificates at each new connection's handshake; the files are re-read
then if any of them has changed (a new inode, size or mtime: an edit, or the symlink swap of a
Kubernetes Secret), so a renewed certificate is served without a restart. A change that does
not load is reported once and the certificates in use stay.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sidecar.core.errors import ConfigError

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

CERT_FILE = "SIDECAR_TLS_CERT_FILE"
KEY_FILE = "SIDECAR_TLS_KEY_FILE"
CLIENT_CA_FILE = "SIDECAR_TLS_CLIENT_CA_FILE"


@dataclass(frozen=True)
class TlsFiles:
    """Where the listener's certificate chain, its key and (for mTLS) the client CAs are."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        extra = (self.client_ca_file,) if self.client_ca_file else ()
        return (self.cert_file, self.key_file, *extra)


@dataclass(frozen=True)
class _Material:
    cert_chain: bytes
    key: bytes
    client_ca: bytes | None


def check(files: TlsFiles) -> list[str]:
    """One line per problem with the files, each naming its variable; empty when they load."""
    return _load(files)[1]


def _load(files: TlsFiles) -> tuple[_Material | None, list[str]]:
    problems: list[str] = []
    chain = _read(CERT_FILE, files.cert_file, problems)
    key = _read(KEY_FILE, files.key_file, problems)
    client_ca = _read(CLIENT_CA_FILE, files.client_ca_file, problems)
    certificate = None
    if chain is not None:
        try:
            certificate = x509.load_pem_x509_certificates(chain)[0]
        except ValueError:
            problems.append(f"{CERT_FILE}: {files.cert_file} holds no PEM certificate")
    if key is not None:
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError):
            problems.append(f"{KEY_FILE}: {files.key_file} holds no unencrypted PEM private key")
        else:
            if certificate is not None and _public(private.public_key()) != _public(
                certificate.public_key()
            ):
                problems.append(
                    f"{KEY_FILE}: {files.key_file} is not the key of the certificate in "
                    f"{files.cert_file}"
                )
    if client_ca is not None:
        try:
            x509.load_pem_x509_certificates(client_ca)
        except ValueError:
            problems.append(f"{CLIENT_CA_FILE}: {files.client_ca_file} holds no PEM certificate")
    if problems or chain is None or key is None:
        return None, problems
    return _Material(chain, key, client_ca), []


def _read(name: str, path: str | None, problems: list[str]) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        problems.append(f"{name}: cannot read {path}: {error.strerror}")
        return None


def _public(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Certificates:
    """The listener's certificates, as gRPC's dynamic server credentials fetch them."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()  # gRPC may fetch from several handshakes at once
        self._stamp = self._stat()
        material, problems = _load(files)
        if material is None:  # they loaded when the config was checked, and changed since
            raise ConfigError(problems)
        self._material = material
        self._reported: tuple[tuple[int, int, int], ...] | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that require client certificates when a client CA is set."""
        import grpc  # only the server needs grpc; config checks files without it

        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._material),
            self.fetch,  # type: ignore[arg-type]  # gRPC documents None as "no change"
            require_client_authentication=self._files.client_ca_file is not None,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC calls this at each handshake: a new configuration if the files changed, else
        None (keep the current one)."""
        stamp = self._stat()
        with self._lock:
            if stamp == self._stamp:
                return None
            material, problems = _load(self._files)
            if material is None:
                if stamp != self._reported:  # once per change, not once per handshake
                    self._reported = stamp
                    log.warning("TLS files changed but do not load: %s", "; ".join(problems))
                return None
            self._stamp, self._material = stamp, material
        log.info("TLS certificates reloaded from %s", self._files.cert_file)
        return self._configuration(material)

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._files.paths:
            try:
                info = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(stamps)

    @staticmethod
    def _configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
        import grpc

        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.cert_chain)], root_certificates=material.client_ca
        )
