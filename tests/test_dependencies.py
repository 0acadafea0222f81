"""Every third-party package the application imports is declared in pyproject.toml.

A package that only happens to be installed here (pydantic was one: this machine's image carries it,
the GPU machine's does not) passes every other test and fails on a fresh machine."""

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _imported_top_level(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"diffstudio", "__future__"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0)) for req in project["dependencies"]}


def test_every_imported_package_is_a_declared_dependency():
    dists = md.packages_distributions()
    imported = _imported_top_level(ROOT / "diffstudio")
    assert {"torch", "numpy", "pydantic", "PySide6"} <= imported  # the scan sees real imports
    declared = _declared()
    missing = {}
    for module in sorted(imported):
        owners = {_norm(d) for d in dists.get(module, [])}
        assert owners, f"{module} is imported but no installed distribution provides it"
        if not owners & declared:
            missing[module] = sorted(owners)
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
