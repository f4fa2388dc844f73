"""Shape-scoped tokens: Electric's gatekeeper pattern. Pure: no I/O, no gRPC, no logging.

A gatekeeper mints a token whose shape claim (`{table, namespace?, where?, columns?, params?}`)
names the one shape its bearer may sync. A shape request, read from Electric's query string as
Electric reads it, or from `ValidateRequest.shape`, is allowed only when it asks for exactly that
shape. Everything here fails closed: a request or claim that cannot be read is a mismatch.

How the fields compare, after each side is read into a `Shape`:
- `table`: byte for byte, the claim's `namespace.table` when it has a namespace. `Items`,
  `items` and `public.items` are different tables here, even where Postgres would resolve them
  to the same one: such a request is refused, never let through.
- `where`: byte for byte. Empty or blank counts as absent, as Electric casts it (Ecto's empty
  values), so `where=` asks for every row and only a claim without a where allows it.
- `columns`: as sets of column names. A comma-separated string (the request's, or a claim's)
  is read with Electric's identifier rules: `"Title"` is the name `Title`, unquoted `Title` is
  `title`, `""` inside quotes is one `"`. A claim's list holds names as they are, unquoted, as
  the TypeScript client takes them (it quotes each name itself on the wire).
- `params`: the where clause's positional parameters as a map from "1", "2", ... to strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from sidecar.core import paths
from sidecar.core.errors import ShapeMismatch
from sidecar.core.validator import Decision

# The query parameters that define a shape. Every other parameter is either Electric's protocol
# (offset, handle, live, cursor, live_sse, log, replica, cache-buster, expired_handle,
# subset__*, ...) or the application's own, and does not widen what the shape can read.
SHAPING = ("table", "where", "columns", "params")
_PARAM_KEY = re.compile(r"params\[([^\[\]]*)\]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNQUOTED = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Commas outside double quotes, as Electric.Plug.Utils.parse_columns_param splits them.
_COLUMN_SPLIT = re.compile(r',(?=(?:[^"]*"[^"]*")*[^"]*$)')
_LONE_QUOTE = re.compile(r'(?<!")"(?!")')


@dataclass(frozen=True, slots=True)
class Shape:
    """One shape definition, normalised so that two equal shapes compare equal."""

    table: str
    where: str | None = None
    columns: frozenset[str] | None = None
    params: tuple[tuple[str, str], ...] = ()


def from_query(query: str) -> Shape:
    """The shape a `/v1/shape` query string asks for (the part after `?`).

    Decodes as Plug does (percent-escapes, `+` as space, UTF-8); a repeated shaping parameter, a
    nested one, or an undecodable query is refused rather than guessed at, since Electric and
    the sidecar could read it differently.
    """
    single: dict[str, str] = {}
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name, value = _decode(raw_name), _decode(raw_value)
        base = name.partition("[")[0]
        if base not in SHAPING:
            continue
        if base == "params":
            key = _PARAM_KEY.fullmatch(name)
            if key is None:
                raise ShapeMismatch(f'Invalid shape request: "{name}" is not params[n]')
            target, field = params, key.group(1)
        elif name != base:
            raise ShapeMismatch(f'Invalid shape request: "{name}" is not a shape parameter')
        else:
            target, field = single, name
        if field in target:
            raise ShapeMismatch(f'Invalid shape request: "{name}" is repeated')
        target[field] = value
    columns = _blank_to_none(single.get("columns"))
    return _shape(
        table=single.get("table"),
        where=single.get("where"),
        columns=None if columns is None else _parse_columns(columns, "request"),
        params=params,
    )


def from_request(table: str, where: str, columns: Sequence[str], params: Sequence[str]) -> Shape:
    """The shape that `ValidateRequest.shape` describes: names as they are, params in order."""
    return _shape(
        table=table,
        where=where,
        columns=frozenset(columns) if columns else None,
        params={str(n): value for n, value in enumerate(params, start=1)},
    )


def from_claim(claim: Any, name: str) -> Shape:
    """The shape a token's claim (named `name`) allows; a claim that cannot be read is refused."""
    if not isinstance(claim, Mapping):
        raise ShapeMismatch(f'Invalid "{name}" claim: not an object')
    table, namespace = claim.get("table"), claim.get("namespace")
    if not isinstance(table, str) or not table.strip():
        raise ShapeMismatch(f'Invalid "{name}" claim: "table" is not a non-empty string')
    if namespace is not None and not isinstance(namespace, str):
        raise ShapeMismatch(f'Invalid "{name}" claim: "namespace" is not a string')
    if namespace:
        table = f"{namespace}.{table}"
    where = claim.get("where")
    if where is not None and not isinstance(where, str):
        raise ShapeMismatch(f'Invalid "{name}" claim: "where" is not a string')
    return _shape(
        table=table,
        where=where,
        columns=_claim_columns(claim.get("columns"), name),
        params=_claim_params(claim.get("params"), name),
    )


def check(claims: Mapping[str, Any], name: str, requested: Shape) -> None:
    """Raises `ShapeMismatch` unless the claim `name` in `claims` allows exactly `requested`."""
    if name not in claims:
        raise ShapeMismatch(f'Token has no "{name}" claim')
    allowed = from_claim(claims[name], name)
    for field in ("table", "where", "columns", "params"):
        if getattr(allowed, field) != getattr(requested, field):
            raise ShapeMismatch(
                f'Shape mismatch: the request\'s "{field}" is not the "{name}" claim\'s'
            )


def authorize(decision: Decision, name: str, requested: Callable[[], Shape]) -> Decision:
    """A valid decision stays valid only if its token's claim `name` allows the shape that
    `requested` reads (from a query string or a ShapeRequest); reading it may itself refuse."""
    if not decision.valid:
        return decision
    try:
        check(decision.claims, name, requested())
    except ShapeMismatch as error:
        return Decision.refused(error)
    return decision


def path_matcher(path: str) -> tuple[str, ...]:
    """The configured shape path as a router routes it (see core/paths.py)."""
    return paths.segments(path)


def is_shape_path(path: str, segments: tuple[str, ...]) -> bool:
    """Whether a request path (query excluded) reaches the shape endpoint, compared after
    normalisation (so `//v1/./shape/` and `/v1/%73hape` count). Raises AmbiguousPath."""
    return paths.segments(path) == segments


def _shape(
    *,
    table: str | None,
    where: str | None,
    columns: frozenset[str] | None,
    params: Mapping[str, str],
) -> Shape:
    table = _blank_to_none(table)
    if table is None:
        raise ShapeMismatch('Invalid shape request: "table" is missing')
    return Shape(
        table=table,
        where=_blank_to_none(where),
        columns=columns,
        params=tuple(sorted(params.items())),
    )


def _claim_columns(value: Any, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if _blank_to_none(value) is None else _parse_columns(value, f'"{name}" claim')
    if isinstance(value, list) and value and all(isinstance(c, str) and c for c in value):
        return frozenset(value)
    raise ShapeMismatch(
        f'Invalid "{name}" claim: "columns" is not a list of names or a comma-separated string'
    )


def _claim_params(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, list):
        items = ((str(n), v) for n, v in enumerate(value, start=1))
    elif isinstance(value, Mapping):
        items = value.items()
    else:
        raise ShapeMismatch(f'Invalid "{name}" claim: "params" is not a list or an object')
    params = {}
    for key, item in items:
        if not isinstance(item, str):
            raise ShapeMismatch(f'Invalid "{name}" claim: "params" values must be strings')
        params[key] = item
    return params


def _parse_columns(columns: str, where: str) -> frozenset[str]:
    """Electric's column list: comma-separated Postgres identifiers."""
    names = []
    for ident in _COLUMN_SPLIT.split(columns):
        if len(ident) >= 2 and ident.startswith('"') and ident.endswith('"'):
            inner = ident[1:-1]
            if not inner or _LONE_QUOTE.search(inner):
                raise ShapeMismatch(f"Invalid shape {where}: bad quoted column {ident}")
            names.append(inner.replace('""', '"'))
        elif _UNQUOTED.fullmatch(ident):
            names.append(ident.lower())
        else:
            raise ShapeMismatch(f"Invalid shape {where}: bad column name {ident!r}")
    return frozenset(names)


def _decode(text: str) -> str:
    if _BAD_PERCENT.search(text):
        raise ShapeMismatch("Invalid shape request: bad percent-encoding in the query string")
    try:
        return unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        raise ShapeMismatch("Invalid shape request: the query string is not UTF-8") from None


def _blank_to_none(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None
