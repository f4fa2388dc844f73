"""The settings table's rows for the state the sidecar keeps: revocations, and who may revoke.
`settings.SETTINGS` splices them in at their place.
"""

from __future__ import annotations

from sidecar.config import parsers
from sidecar.config.setting import SERVE_ONLY, SERVE_REVOKE, Setting

STATE: tuple[Setting, ...] = (
    Setting(
        "SIDECAR_ADMIN_SECRET",
        "secure: bearer secret that Revoke callers must send (32+ bytes); unset: Revoke is off",
        parsers.mint_secret,
        field="admin_secret",
        secure_only=True,
        secret=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ADMIN_SECRET_FILE",
        "secure: read SIDECAR_ADMIN_SECRET from this file instead",
        None,
        secure_only=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_STATE_DIR",
        "directory of the embedded revocation store (created if missing); unset, with the "
        "embedded store: revocation is off",
        parsers.text,
        commands=SERVE_REVOKE,
    ),
    Setting(
        "SIDECAR_REVOCATION_STORE",
        "`embedded` (SQLite in SIDECAR_STATE_DIR: one host, any workers) or a Redis/Valkey URL, "
        "`redis://`, `rediss://` or `unix://`, shared by replicas",
        parsers.revocation_store,
        "embedded",
        commands=SERVE_REVOKE,
    ),
    Setting(
        "SIDECAR_REVOCATION_FAIL",
        "`closed`: valid tokens get UNAVAILABLE once the local copy of the revocations is older "
        "than the staleness bound; `open`: keep deciding from it",
        parsers.one_of(("closed", "open")),
        "closed",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_REVOCATION_MAX_STALENESS_SECONDS",
        "how old the local copy of the revocations may be (the store unreachable) before "
        "SIDECAR_REVOCATION_FAIL applies",
        parsers.whole(1, 86400),
        "10",
        commands=SERVE_ONLY,
    ),
)
