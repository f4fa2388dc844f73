"""`Reason`: why a token was refused, as one Python enum with the proto's values.

The server, its adapters, the CLI and the Python client all use this one definition. Members
drop the proto's `REASON_` prefix; `wire` (and `str()`) gives the proto name back.
"""

from __future__ import annotations

import enum

from authsidecar.v1 import auth_pb2

_PREFIX = "REASON_"


class Reason(enum.IntEnum):
    """`authsidecar.v1.Reason`, value for value; a test checks that no member is missing."""

    UNSPECIFIED = auth_pb2.REASON_UNSPECIFIED
    MALFORMED = auth_pb2.REASON_MALFORMED
    ALGORITHM_MISMATCH = auth_pb2.REASON_ALGORITHM_MISMATCH
    BAD_SIGNATURE = auth_pb2.REASON_BAD_SIGNATURE
    EXPIRED = auth_pb2.REASON_EXPIRED
    NOT_YET_VALID = auth_pb2.REASON_NOT_YET_VALID
    MISSING_CLAIM = auth_pb2.REASON_MISSING_CLAIM
    INVALID_CLAIM = auth_pb2.REASON_INVALID_CLAIM
    INVALID_USER_ID = auth_pb2.REASON_INVALID_USER_ID
    SHAPE_MISMATCH = auth_pb2.REASON_SHAPE_MISMATCH
    FORBIDDEN = auth_pb2.REASON_FORBIDDEN
    INACTIVE = auth_pb2.REASON_INACTIVE
    REVOKED = auth_pb2.REASON_REVOKED

    @property
    def wire(self) -> str:
        """The proto name, as Go and TypeScript print it: `REASON_EXPIRED`."""
        return _PREFIX + self.name

    def __str__(self) -> str:
        return self.wire

    def __format__(self, spec: str) -> str:
        return format(self.wire, spec)

    @classmethod
    def _missing_(cls, value: object) -> Reason | None:
        """A value added to the proto after this package was built is kept, not an error."""
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = auth_pb2.Reason.ValueType(value)
        return member
