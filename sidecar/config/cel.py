"""A route's `when`: a CEL expression, compiled once with Google's cel-cpp (`cel-expr-python`).

The expression is type-checked at compile time against the variables a route offers (TYPES), so
a misspelt variable or an operator on the wrong types fails at start-up (or at a reload), with its
line and column. At run time any error (a missing key, a wrong type) is None: the route denies.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from cel_expr_python import cel

_STRINGS = cel.Type.Map(cel.Type.STRING, cel.Type.STRING)
TYPES = {
    "claims": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
    "user_id": cel.Type.STRING,
    "request.method": cel.Type.STRING,
    "request.path": cel.Type.STRING,
    "request.host": cel.Type.STRING,
    "request.query": _STRINGS,
    "request.headers": _STRINGS,
}
"""Every variable an expression may read (rules.CONDITION_VARIABLES), and its type. `request.x`
are variables of their own, so `request.methd` is an undeclared reference at start-up."""
_RESULTS = ("bool", "dyn")


class CelProblem(ValueError):
    """An expression that does not compile, or that is not a condition; says where, on one line."""


class Expression:
    """One compiled condition; `holds` is safe to call from any request."""

    def __init__(self, compiled: Any, reads: frozenset[str]) -> None:
        self._compiled = compiled
        self.reads = reads
        """Which variables the expression reads: only those are built for it per request."""

    def holds(self, variables: Mapping[str, Any]) -> bool | None:
        try:
            result = self._compiled.eval(data=variables)
        except Exception:  # noqa: BLE001 - a value CEL cannot take (a huge int) denies
            return None
        if result.type() != cel.Type.BOOL:
            return None  # an error value, or not a condition
        return bool(result.value())


def compile_condition(source: str) -> Expression:
    """Compiles `source`; raises CelProblem naming the position (`1:7: undeclared reference
    to 'reqest'`)."""
    try:
        compiled = _environment().compile(source)
    except RuntimeError as error:
        raise CelProblem(_first_line(str(error))) from None
    result = compiled.return_type().name().lower()
    if result not in _RESULTS:
        raise CelProblem(f"is of type {result}, not a condition (bool)")
    return Expression(compiled, frozenset(name for name in TYPES if _reads(source, name)))


def _reads(source: str, name: str) -> bool:
    """Whether `source` reads the variable `name`: the checker finds it undeclared without it."""
    try:
        _environment(without=name).compile(source)
    except RuntimeError:
        return True
    return False


@functools.cache
def _environment(without: str = "") -> Any:
    """A checked environment with every variable (but `without`), built on first use."""
    return cel.NewEnv(variables={k: v for k, v in TYPES.items() if k != without})


def _first_line(message: str) -> str:
    """cel-cpp's `INVALID_ARGUMENT: ERROR: <input>:1:7: text (in container '')` (then the
    source) as `1:7: text`: every expression is in the one unnamed container."""
    line = message.split("\n", 1)[0].removesuffix(" (in container '')")
    _, found, rest = line.partition("ERROR: <input>:")
    return rest.strip() if found else line.strip()
