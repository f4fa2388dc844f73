"""SIDECAR_CONFIG_FILE: one TOML file with `[[issuers]]` (config/issuers.py) and `[[routes]]`
(config/routes.py) tables, either or both. Read once per load; a reload reads it again.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from sidecar.config.issuers import CONFIG_FILE

SECTIONS = ("issuers", "routes")


def read(path: str, problems: list[str]) -> dict[str, Any]:
    """The file's tables by section; an unreadable file or an unknown section is a problem."""
    try:
        with Path(path).open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        problems.append(f"{CONFIG_FILE}: cannot read {path}: {error.strerror}")
        return {}
    except tomllib.TOMLDecodeError as error:
        problems.append(f"{CONFIG_FILE}: {path} is not valid TOML: {error}")
        return {}
    for key in document:
        if key not in SECTIONS:
            problems.append(
                f"{CONFIG_FILE}: unknown key {key!r}; only [[issuers]] and [[routes]] tables"
            )
    if not any(document.get(section) for section in SECTIONS):
        problems.append(f"{CONFIG_FILE}: {path} needs [[issuers]] or [[routes]] tables")
    return {key: value for key, value in document.items() if key in SECTIONS}
