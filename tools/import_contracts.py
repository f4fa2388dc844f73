"""Two import-linter contracts that its built-in types do not express; pyproject.toml uses them.

- `stdlib_only`: the source packages import nothing but the standard library, themselves and an
  explicit allow-list. It is an allow-list, so a new third-party import in the core fails at once,
  where a `forbidden` contract would need to name every package that must not come in.
- `acyclic_modules`: no module imports itself through a chain of others. `acyclic_siblings`
  compares siblings only, so it misses a package's `__init__` and one of its own modules
  importing each other.
"""

from __future__ import annotations

import sys
from typing import cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


def _option(value: object) -> list[str]:
    """A list option's value: import-linter sets the instance attribute over the field."""
    return list(cast(list[str], value))


def _within(module: str, packages: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _descendants(graph: ImportGraph, packages: list[str]) -> list[str]:
    found = set(packages)
    for package in packages:
        found |= graph.find_descendants(package)
    return sorted(found)


class StandardLibraryOnlyContract(Contract):
    """`source_modules` (packages) import only the standard library, each other and
    `allowed_modules` (packages)."""

    type_name = "stdlib_only"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        sources = _option(self.source_modules)
        allowed = sources + _option(self.allowed_modules or [])
        illegal = [
            f"{importer} -> {imported} (l.{detail['line_number']})"
            for importer in _descendants(graph, sources)
            for imported in sorted(graph.find_modules_directly_imported_by(importer))
            if imported.partition(".")[0] not in sys.stdlib_module_names
            and not _within(imported, allowed)
            for detail in graph.get_import_details(importer=importer, imported=imported)
        ]
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["illegal"]:
            output.print_error(f"- {line}", bold=False)
        output.new_line()


class AcyclicModulesContract(Contract):
    """No module in `packages` reaches itself through the imports of modules in `packages`."""

    type_name = "acyclic_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        packages = _option(self.packages)
        cycles: set[tuple[str, ...]] = set()
        for module in _descendants(graph, packages):
            for imported in graph.find_modules_directly_imported_by(module):
                if not _within(imported, packages):
                    continue
                back = graph.find_shortest_chain(importer=imported, imported=module)
                if back is not None:
                    cycle = (module, *back)
                    start = cycle.index(min(cycle[:-1]))  # one rotation per cycle
                    cycles.add(cycle[start:-1] + cycle[:start] + (cycle[start],))
        return ContractCheck(kept=not cycles, metadata={"cycles": sorted(cycles)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("- " + " -> ".join(cycle), bold=False)
        output.new_line()
