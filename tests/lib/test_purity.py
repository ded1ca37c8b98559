"""poolboard/lib and poolboard/sources never import Django (DESIGN.md §2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "poolboard"
PURE_FILES = sorted((ROOT / "lib").rglob("*.py")) + sorted((ROOT / "sources").rglob("*.py"))


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_no_django(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    offenders = [name for name in imported if name == "django" or name.startswith("django.") or name.startswith("poolboard.") and not name.startswith(("poolboard.lib", "poolboard.sources"))]
    assert offenders == [], f"{path.name} imports {offenders}"


def test_lib_modules_exist() -> None:
    assert any(p.name == "pools.py" for p in PURE_FILES)
