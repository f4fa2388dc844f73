"""Request paths as routers read them: hand-written vectors, then properties."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import SHAPE_PATH_SPELLINGS

from sidecar.core import paths
from sidecar.core.errors import AmbiguousPath, Reason

SHAPE = ("v1", "shape")


@pytest.mark.parametrize("path", SHAPE_PATH_SPELLINGS)
def test_every_spelling_that_routers_serve_as_the_shape_path(path: str) -> None:
    assert paths.segments(path) == SHAPE


@pytest.mark.parametrize(
    "path",
    [
        "/v1%2Fshape",
        "/v1%2fshape",
        "/v1%5Cshape",
        "/v1\\shape",
        "/v1/shape;jsessionid=1",
        "/v1/%2573hape",
        "/v1/%zz",
        "/v1/%7",
        "/v1/sh\x00ape",
        "/v1/%00",
        "/v1/%7F",
        "v1/shape",
        "",
    ],
)
def test_what_routers_read_differently_is_refused(path: str) -> None:
    with pytest.raises(AmbiguousPath) as raised:
        paths.segments(path)
    assert raised.value.reason is Reason.SHAPE_MISMATCH


def test_reserved_and_non_ascii_escapes_stay_encoded_in_one_case() -> None:
    assert paths.segments("/a%3fb/%c3%a9") == ("a%3Fb", "%C3%A9")


SEGMENT = st.text(alphabet="abcxyz019-._~", min_size=0, max_size=6)
PLAIN = st.lists(SEGMENT, max_size=8).map(lambda parts: "/" + "/".join(parts))


@given(PLAIN)
def test_normalising_twice_changes_nothing(path: str) -> None:
    once = paths.segments(path)
    assert paths.segments("/" + "/".join(once)) == once
    assert not {"", ".", ".."} & set(once)


@given(PLAIN)
def test_plain_paths_agree_with_posixpath(path: str) -> None:
    expected = posixpath.normpath("/" + path.lstrip("/")).lstrip("/")
    assert paths.segments(path) == (tuple(expected.split("/")) if expected else ())


@given(PLAIN, st.data())
def test_encoding_an_unreserved_character_changes_nothing(path: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(path) - 1))
    if path[index] == "/":
        return
    encoded = path[:index] + f"%{ord(path[index]):02x}" + path[index + 1 :]
    assert paths.segments(encoded) == paths.segments(path)
