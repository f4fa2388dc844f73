"""The README's tables must match the code: every setting, flag and default, and every reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authsidecar.v1 import auth_pb2
from sidecar.config import SETTINGS, Setting

README = (Path(__file__).parent.parent / "README.md").read_text()
_ROW = re.compile(r"^\| `(\w+)` \| `(--[\w-]+)` \| ?(`[^`]*`)? ?\|", re.MULTILINE)
ROWS = {match.group(1): match.groups()[1:] for match in _ROW.finditer(README)}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_in_the_configuration_table(setting: Setting) -> None:
    flag, default = ROWS[setting.env]
    assert flag == setting.flag
    assert default == (f"`{setting.default}`" if setting.default else None)


def test_the_table_lists_no_setting_that_does_not_exist() -> None:
    assert set(ROWS) == {s.env for s in SETTINGS}


@pytest.mark.parametrize("name", auth_pb2.Reason.keys())
def test_every_reason_is_in_the_reason_table(name: str) -> None:
    assert f"| `{name}` |" in README
