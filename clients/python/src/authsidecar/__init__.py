"""Python client for auth-sidecar, and the generated `authsidecar.v1` API stubs it is built on."""

from authsidecar.client import (
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_TIMEOUT,
    MAX_RETRY_ATTEMPTS,
    MAX_RETRY_BACKOFF,
    MIN_RETRY_BACKOFF,
    AsyncAuthClient,
    AuthClient,
    Decision,
    Minted,
    Reason,
    retry_service_config,
)

__all__ = [
    "DEFAULT_RETRY_ATTEMPTS",
    "DEFAULT_RETRY_BACKOFF",
    "DEFAULT_TIMEOUT",
    "MAX_RETRY_ATTEMPTS",
    "MAX_RETRY_BACKOFF",
    "MIN_RETRY_BACKOFF",
    "AsyncAuthClient",
    "AuthClient",
    "Decision",
    "Minted",
    "Reason",
    "retry_service_config",
]
__version__ = "0.1.0"
