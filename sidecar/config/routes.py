"""`[[routes]]` tables of SIDECAR_CONFIG_FILE, checked and turned into the core's `Routes`.

```toml
[[routes]]
name = "admin"                  # required, unique: in refusals, logs and metrics
path_prefix = "/admin"          # or `path = "/v1/shape"` (exact); both after normalisation
methods = ["POST", "DELETE"]    # default: every method
hosts = ["api.example.com"]     # default: every host; compared without the port
scopes_all = ["sync:write"]     # from `scope` and `scp` alike; also `scopes_any`
audience = "admin-api"          # instead of the issuer's aud: the token's is or holds it
when = 'request.method == "GET" && "sync" in claims.scp'   # CEL
dry_run = true                  # report what would be refused, refuse nothing

[[routes.claims]]               # each: `path` and one test
path = "realm_access.roles"     # dotted, under AUTH_JWT_NAMESPACE when set
contains = "admin"              # or equals, one_of = [...], contains_any = [...]
```
Every problem is one line naming the route; a CEL expression's names its line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.config import cel
from sidecar.config.issuers import CONFIG_FILE
from sidecar.core import paths, rules
from sidecar.core.errors import AmbiguousPath

_KEYS = (
    "name",
    "path",
    "path_prefix",
    "methods",
    "hosts",
    "anonymous",
    "ignore_invalid_token",
    "scopes_any",
    "scopes_all",
    "claims",
    "audience",
    "when",
    "dry_run",
)
_REQUIREMENTS = ("scopes_any", "scopes_all", "claims", "audience", "when")
_METHOD = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SCOPE_TOKEN = re.compile(r"[!#-\[\]-~]+")  # RFC 6749 §3.3 scope-token


def build(
    tables: Any,
    default: rules.DefaultRoute,
    dry_run: bool,
    problems: list[str],
    compile_condition: Callable[[str], rules.Condition] = cel.compile_condition,
) -> rules.Routes:
    """The routes of `tables` (the file's `routes` value) in order; problems are appended."""
    fallback = rules.default_route(default, dry_run)
    if tables is None:
        return rules.Routes((), fallback)
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(f"{CONFIG_FILE}: routes must be [[routes]] tables")
        return rules.Routes((), fallback)
    built: list[rules.Route] = []
    names: set[str] = set()
    for index, table in enumerate(tables):
        reader = _Table(table, f"{CONFIG_FILE}: [[routes]] #{index + 1}", problems)
        route = reader.route(dry_run, compile_condition)
        if route is None:
            continue
        if route.name in names:
            problems.append(f"{reader.where}: name {route.name!r} is already another route's")
        names.add(route.name)
        built.append(route)
    return rules.Routes(built, fallback)


class _Table:
    def __init__(self, table: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.table = table
        self.where = where
        self._problems = problems
        self._count = len(problems)

    def route(
        self, dry_run: bool, compile_condition: Callable[[str], rules.Condition]
    ) -> rules.Route | None:
        for key in self.table:
            if key not in _KEYS:
                self.problem(f"unknown key {key!r} (known: {', '.join(_KEYS)})")
        name = self.text("name")
        if name is None:
            self.problem("needs name")
            return None
        self.where = f"{CONFIG_FILE}: route {name!r}"
        match = self.match()
        anonymous = self.flag("anonymous")
        requirements: list[rules.Requirement] = []
        for every, key in ((False, "scopes_any"), (True, "scopes_all")):
            scopes = self.strings(key, single_words=True)
            if scopes:
                requirements.append(rules.Scopes(name, scopes, every))
        requirements += self.claims(name)
        audience = self.text("audience")
        if audience is not None:
            requirements.append(rules.Audience(name, audience))
        when = self.text("when")
        if when is not None:
            try:
                requirements.append(rules.When(name, compile_condition(when)))
            except cel.CelProblem as problem:
                self.problem(f"when: {problem}")
        if anonymous and any(key in self.table for key in _REQUIREMENTS):
            given = [key for key in _REQUIREMENTS if key in self.table]
            self.problem(f"anonymous = true cannot have requirements ({', '.join(given)})")
        ignore = self.flag("ignore_invalid_token")
        if ignore and not anonymous:
            self.problem("ignore_invalid_token = true needs anonymous = true")
        if len(self._problems) > self._count:
            return None
        return rules.Route(
            name,
            match,
            tuple(requirements),
            anonymous=anonymous,
            ignore_invalid_token=ignore,
            dry_run=dry_run or self.flag("dry_run"),
        )

    def match(self) -> rules.Match:
        path, prefix = self.path("path"), self.path("path_prefix")
        if path is not None and prefix is not None:
            self.problem("has both path and path_prefix; set one")
        methods = self.strings("methods")
        for method in methods or ():
            if not method or any(c not in _METHOD for c in method.upper()):
                self.problem(f"methods: {method!r} is not an HTTP method")
        hosts = self.strings("hosts")
        return rules.Match(
            path=path,
            prefix=prefix,
            methods=frozenset(m.upper() for m in methods) if methods is not None else None,
            hosts=frozenset(rules.host_of(h) for h in hosts) if hosts is not None else None,
        )

    def claims(self, route: str) -> list[rules.Requirement]:
        tables = self.table.get("claims")
        if tables is None:
            return []
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            self.problem("claims must be [[routes.claims]] tables")
            return []
        tests: list[rules.Requirement] = []
        for number, table in enumerate(tables, start=1):
            where = f"claims #{number}"
            path = table.get("path")
            ops = [key for key in table if key in rules.CLAIM_TESTS]
            extra = [key for key in table if key != "path" and key not in rules.CLAIM_TESTS]
            if not isinstance(path, str) or not all(path.split(".")):
                self.problem(f"{where}: needs path, a dotted claim name such as realm_access.roles")
                continue
            if extra:
                known = ", ".join(["path", *rules.CLAIM_TESTS])
                self.problem(f"{where}: unknown key {extra[0]!r} (known: {known})")
            if len(ops) != 1:
                self.problem(f"{where}: needs exactly one of {', '.join(rules.CLAIM_TESTS)}")
                continue
            op = ops[0]
            operand = table[op]
            wants_list = rules.CLAIM_TESTS[op][1]
            if wants_list and not (isinstance(operand, list) and operand):
                self.problem(f"{where}: {op} must be a non-empty list")
                continue
            for value in operand if wants_list else [operand]:
                if not isinstance(value, str | int | float | bool):
                    self.problem(f"{where}: {op} takes strings, numbers or booleans")
                    break
            else:
                tests.append(rules.ClaimTest(route, tuple(path.split(".")), op, _frozen(operand)))
        return tests

    def path(self, key: str) -> tuple[str, ...] | None:
        raw = self.text(key)
        if raw is None:
            return None
        if not raw.startswith("/") or "?" in raw:
            self.problem(f"{key} must be a path such as /v1/shape, not {raw!r}")
            return None
        try:
            return paths.segments(raw)
        except AmbiguousPath:
            self.problem(f"{key} {raw!r} is ambiguous (an encoded / or \\, a `;`, a control)")
            return None

    def text(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{key} must be a non-empty string")
            return None
        return value

    def flag(self, key: str) -> bool:
        value = self.table.get(key, False)
        if not isinstance(value, bool):
            self.problem(f"{key} must be true or false")
            return False
        return value

    def strings(self, key: str, single_words: bool = False) -> tuple[str, ...] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            self.problem(f"{key} must be a non-empty list of strings")
            return None
        if single_words and not all(_SCOPE_TOKEN.fullmatch(v) for v in value):
            self.problem(f"{key}: a scope has no spaces, quotes or backslashes (RFC 6749 §3.3)")
            return None
        return tuple(value)

    def problem(self, text: str) -> None:
        self._problems.append(f"{self.where}: {text}")


def _frozen(operand: Any) -> Any:
    return tuple(operand) if isinstance(operand, list) else operand
