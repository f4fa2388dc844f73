"""The layer contracts: the real tree keeps every one, and each contract type of
tools/import_contracts.py breaks on the violation it exists for (graphs built by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from grimp import ImportGraph
from importlinter import Contract

from tools.import_contracts import AcyclicModulesContract, StandardLibraryOnlyContract

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 500


def graph(*imports: tuple[str, str]) -> ImportGraph:
    """A graph of the package `app`; a name without a dot is an external package."""
    built = ImportGraph()
    built.add_module("app")
    for importer, imported in imports:
        for module in (importer, imported):
            if module not in built.modules:
                built.add_module(module, is_squashed="." not in module)
        built.add_import(
            importer=importer, imported=imported, line_number=1, line_contents="import"
        )
    return built


def contract(kind: type[Contract], **options: list[str]) -> Contract:
    return kind(name="test", session_options={}, contract_options=options)


def test_the_tree_keeps_every_contract() -> None:
    run = subprocess.run(
        [Path(sys.executable).parent / "lint-imports", "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 kept, 0 broken" in run.stdout


def test_no_module_over_the_line_limit_and_only_the_entry_points_on_top() -> None:
    package = ROOT / "sidecar"
    long = {
        str(p.relative_to(ROOT)): n
        for p in package.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
    assert {p.name for p in package.glob("*.py")} == {"__init__.py", "__main__.py", "cli.py"}


@pytest.mark.parametrize(
    ("imported", "kept"),
    [
        ("json", True),  # the standard library
        ("app.core.b", True),  # itself
        ("api", True),  # the allow-list
        ("grpc", False),
        ("app.keys", False),
    ],
)
def test_stdlib_only_allows_the_standard_library_itself_and_the_list(
    imported: str, kept: bool
) -> None:
    check = contract(
        StandardLibraryOnlyContract, source_modules=["app.core"], allowed_modules=["api"]
    ).check(graph(("app.core.a", imported), ("app.core", "app.core.a")), verbose=False)
    assert check.kept is kept
    if not kept:
        assert check.metadata["illegal"] == [f"app.core.a -> {imported} (l.1)"]


def test_acyclic_modules_finds_a_cycle_through_a_package_init() -> None:
    # acyclic_siblings cannot see this one: app.config is the parent of app.config.loader.
    cyclic = graph(("app.config", "app.config.loader"), ("app.config.loader", "app.config"))
    check = contract(AcyclicModulesContract, packages=["app"]).check(cyclic, verbose=False)
    assert not check.kept
    assert check.metadata["cycles"] == [("app.config", "app.config.loader", "app.config")]


def test_acyclic_modules_reports_a_long_cycle_once_and_ignores_outside_imports() -> None:
    cyclic = graph(("app.a", "app.b"), ("app.b", "app.c"), ("app.c", "app.a"), ("app.a", "grpc"))
    check = contract(AcyclicModulesContract, packages=["app"]).check(cyclic, verbose=False)
    assert check.metadata["cycles"] == [("app.a", "app.b", "app.c", "app.a")]
    acyclic = graph(("app.a", "app.b"), ("app.b", "app.c"), ("app.a", "app.c"))
    assert contract(AcyclicModulesContract, packages=["app"]).check(acyclic, verbose=False).kept
