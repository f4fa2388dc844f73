"""Log output: text or JSON lines (SIDECAR_LOG_FORMAT), with repeated warnings rate-limited.

A record may carry structured `fields` (the decision log does): JSON puts them beside the
stable keys `time`, `level`, `logger`, `pid` and `message`; text appends them as `key=value`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# The pid tells a supervisor's workers apart.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
# A warning repeated (same logger and template) within this many seconds is counted, not shown.
REPEAT_SECONDS = 60.0


def configure(level: str, fmt: str, clock: Callable[[], float] = time.monotonic) -> None:
    """Sends every record to stderr in `fmt` ("text" or "json") from `level` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(RepeatFilter(REPEAT_SECONDS, clock))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = _extra(record)
        if extra:
            text += " " + " ".join(f"{key}={value!r}" for key, value in extra.items())
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the message is never split across lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in _extra(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
    suppressed = getattr(record, "suppressed", 0)
    if suppressed:
        fields["suppressed"] = suppressed
    return fields


class RepeatFilter(logging.Filter):
    """Passes a warning (or worse) once per `interval` per logger and template; the next one
    to pass says how many were held back (`suppressed=N`).

    A record that carries `repeat_key` (`extra={"repeat_key": ...}`) is held back only by the
    same key: warnings that differ in what they report (each skipped key of a key set) all
    pass, while one repeated on the request path stays held back."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, object, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg, getattr(record, "repeat_key", None))
        now = self._clock()
        shown_at, held = self._last.get(key, (None, 0))
        if shown_at is not None and now - shown_at < self._interval:
            self._last[key] = (shown_at, held + 1)
            return False
        self._last[key] = (now, 0)
        record.suppressed = held
        return True
