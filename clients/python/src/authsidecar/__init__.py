"""Python client for auth-sidecar. `authsidecar.v1` (the API stubs) comes from authsidecar-proto.

`extend_path` lets `authsidecar.v1` resolve from the authsidecar-proto distribution when the two
live in different directories (editable installs); installed side by side, they share one.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

# Only now: the client imports `authsidecar.v1`, which the extended path finds.
from authsidecar.client import (
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_TIMEOUT,
    MAX_RETRY_ATTEMPTS,
    MAX_RETRY_BACKOFF,
    MIN_RETRY_BACKOFF,
    SHAPE_CLAIM,
    AsyncAuthClient,
    AuthClient,
    Decision,
    Minted,
    retry_service_config,
)
from authsidecar.v1.reason import Reason

__all__ = [
    "DEFAULT_RETRY_ATTEMPTS",
    "DEFAULT_RETRY_BACKOFF",
    "DEFAULT_TIMEOUT",
    "MAX_RETRY_ATTEMPTS",
    "MAX_RETRY_BACKOFF",
    "MIN_RETRY_BACKOFF",
    "SHAPE_CLAIM",
    "AsyncAuthClient",
    "AuthClient",
    "Decision",
    "Minted",
    "Reason",
    "retry_service_config",
]
__version__ = "0.1.0"
