"""poolboard/lib is pure (no Django, no I/O, no other poolboard package); poolboard/sources does
I/O but never imports Django or anything of poolboard but lib (README, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "poolboard"
LIB_FILES = sorted((ROOT / "lib").rglob("*.py"))
SOURCES_FILES = sorted((ROOT / "sources").rglob("*.py"))

# Modules that talk to the outside world: lib computes, sources fetch.
IO_MODULES = ("django", "psycopg", "psycopg_pool", "requests", "urllib3", "prometheus_api_client", "redis", "celery",
              "socket", "subprocess", "http", "urllib.request", "sqlalchemy")


def imported_modules(path: Path, root: Path = ROOT) -> list[str]:
    """Every module `path` (inside the package at `root`) imports, relative imports resolved."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            # `from poolboard import fleet` imports poolboard.fleet: count the names too.
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def offenders(path: Path, allowed_poolboard: tuple[str, ...], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    return sorted(
        {
            name
            for name in imported_modules(path, root)
            if within(name, *forbidden)
            or within(name, "poolboard") and not within(name, *allowed_poolboard) and name != "poolboard"
        }
    )


# package: (poolboard packages it may import, modules it may not)
RULES = {"lib": (("poolboard.lib",), IO_MODULES), "sources": (("poolboard.lib", "poolboard.sources"), ("django",))}


@pytest.mark.parametrize("path", LIB_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_it_keeps_lib_free_of_django_io_and_the_rest_of_poolboard(path: Path) -> None:
    assert offenders(path, *RULES["lib"]) == []


@pytest.mark.parametrize("path", SOURCES_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_it_keeps_sources_free_of_django_and_poolboard_apps(path: Path) -> None:
    assert offenders(path, *RULES["sources"]) == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("lib", "from ..sources import prometheus\n", ["poolboard.sources", "poolboard.sources.prometheus"]),
        ("lib", "from . import promql\nfrom .pools import FIELDS\n", []),
        ("lib", "from poolboard import fleet\n", ["poolboard.fleet"]),
        ("lib", "import requests\n", ["requests"]),
        ("lib", "def f():\n    from django.conf import settings\n", ["django.conf", "django.conf.settings"]),
        ("sources", "from ..fleet.models import Service\n", ["poolboard.fleet.models", "poolboard.fleet.models.Service"]),
        ("sources", "from ..lib.pools import FIELDS\nimport psycopg\n", []),
    ],
)
def test_it_catches_relative_imports_and_lib_importing_sources(tmp_path, package, source, expected) -> None:
    # The check itself, on made-up modules laid out as poolboard/<package>/ in a scratch directory.
    probe = tmp_path / "poolboard" / package / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(source)
    assert offenders(probe, *RULES[package], root=tmp_path / "poolboard") == expected


def test_it_finds_the_modules_it_checks() -> None:
    assert {"pools.py", "rollups.py"} <= {p.name for p in LIB_FILES} and "prometheus.py" in {p.name for p in SOURCES_FILES}
