"""Python client for auth-sidecar. `authsidecar.v1` (the API stubs) comes from authsidecar-proto.

`extend_path` lets `authsidecar.v1` resolve from the authsidecar-proto distribution when the two
live in different directories (editable installs); installed side by side, they share one.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

# Only now: the client imports `authsidecar.v1`, which the extended path finds.
from authsidecar.client import (
    DEFAULT_TIMEOUT,
    AsyncAuthClient,
    AuthClient,
    Decision,
    Minted,
    Reason,
)

__all__ = ["DEFAULT_TIMEOUT", "AsyncAuthClient", "AuthClient", "Decision", "Minted", "Reason"]
__version__ = "0.1.0"
