"""Python client for auth-sidecar, and the generated `authsidecar.v1` API stubs it is built on."""

from authsidecar.client import (
    DEFAULT_TIMEOUT,
    SHAPE_CLAIM,
    AsyncAuthClient,
    AuthClient,
    Decision,
    Minted,
    Reason,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "SHAPE_CLAIM",
    "AsyncAuthClient",
    "AuthClient",
    "Decision",
    "Minted",
    "Reason",
]
__version__ = "0.1.0"
