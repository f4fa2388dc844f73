"""`Reason`, the one Python definition of the proto's refusal reasons, and its wire names."""

from __future__ import annotations

import pytest

from authsidecar.v1 import auth_pb2
from authsidecar.v1.reason import Reason
from sidecar.core import errors


def test_members_are_the_proto_enum_exactly() -> None:
    assert {r.wire: r.value for r in Reason} == dict(auth_pb2.Reason.items())
    assert [r.wire for r in Reason] == list(auth_pb2.Reason.keys())


@pytest.mark.parametrize("reason", list(Reason))
def test_wire_is_the_proto_name_and_what_str_prints(reason: Reason) -> None:
    assert reason.wire == auth_pb2.Reason.Name(reason.value)
    assert str(reason) == f"{reason}" == reason.wire
    assert Reason(auth_pb2.Reason.Value(reason.wire)) is reason


def test_a_value_from_a_newer_proto_is_kept_not_an_error() -> None:
    unknown = Reason(99)
    assert (unknown.value, unknown.wire) == (99, "REASON_UNKNOWN_99")


def test_the_core_uses_the_same_definition() -> None:
    assert errors.Reason is Reason
    assert errors.ExpiredToken.reason is Reason.EXPIRED
