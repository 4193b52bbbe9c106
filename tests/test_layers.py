"""The import contract (``[tool.importlinter]`` in pyproject.toml): edges above the domains, the
domains above the ledger, the ledger above the base; the ledger imports no domain; no domain
imports an edge; no import cycle anywhere in moralbank. ``make test`` runs it on both engines.

The contract is checked by ``lint-imports`` itself; the second test shows it is not vacuous: the
same check on a copy of the package with one forbidden import added fails, naming the import.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONTRACTS = [
    "Edges above the domains, the domains above the ledger, the ledger above the base",
    "The ledger imports no domain (they register hooks with it instead: ledger.hooks)",
    "No domain imports an edge",
    "No import cycle between the modules and subpackages of moralbank, at any depth",
]


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on ``project`` (its pyproject.toml and its copy of the moralbank package)."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or "lint-imports"]
    # The project's own copy of the package comes first on the path (not the installed one).
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([*command, "--no-cache", "--no-logo"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def kept(output: str, contract: str) -> bool:
    line = next((line for line in output.splitlines() if line.startswith(contract)), "")
    return "KEPT" in line


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in CONTRACTS:
        assert kept(result.stdout, contract), f"{contract!r} not checked and kept:\n{result.stdout}"
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout, result.stdout


@pytest.fixture(scope="module")
def copy_of_project(tmp_path_factory) -> Path:
    """pyproject.toml and the moralbank package, copied (without caches and compiled catalogues)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(ROOT / "moralbank", project / "moralbank",
                    ignore=shutil.ignore_patterns("__pycache__", "*.mo", "*.po", "*.pot", "*.gz"))
    return project


@pytest.mark.parametrize("module, line, broken, shown", [
    # the ledger asking the rankings for scores again (what ledger.hooks replaced)
    ("ledger/service.py", "from ..rankings import scores", {0, 1, 3},
     "moralbank.ledger.service -> moralbank.rankings.scores"),
    # the audit log reading the request's user again (what moved record_denial to people.auth):
    # a cycle, even as a function-level import
    ("audit/service.py", "def _user():\n    from ..people.auth import request_user\n    return request_user()",
     {0, 3}, "moralbank.audit.service -> moralbank.people.auth"),
    # a domain reaching for a page helper
    ("stores/pins.py", "from ..web.forms import safe_next", {0, 2, 3}, "moralbank.stores.pins -> moralbank.web.forms"),
])
def test_a_forbidden_import_breaks_the_contract(copy_of_project, module, line, broken, shown):
    path = copy_of_project / "moralbank" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\n\n" + line + "\n", encoding="utf-8")
    try:
        result = lint_imports(copy_of_project)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode == 1, result.stdout + result.stderr
    for index, contract in enumerate(CONTRACTS):
        assert kept(result.stdout, contract) == (index not in broken), f"{contract!r}:\n{result.stdout}"
    assert shown in result.stdout, result.stdout
