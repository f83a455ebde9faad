"""The layering DESIGN.md fixes: ``workers`` depends on ``feedwatch``, never the reverse.

Importing every ``feedwatch`` module pulls in neither Celery nor ``workers``; the few commands
that start or message the workers import them inside the command, never at module level; and
the pure stages (parse, normalize, rules) import no I/O library at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "feedwatch"
PURE = ["parse.py", "normalize.py", "jsonfeed.py", "textnorm.py", "schedule.py", "extract.py", "rules"]
IO_MODULES = {
    "aiohttp",
    "pycurl",
    "httpx",
    "redis",
    "sqlalchemy",
    "sqlmodel",
    "celery",
    "kombu",
    "socket",
    "requests",
}


def _loaded_after(imports: str, packages: tuple[str, ...]) -> list[str]:
    """Which of ``packages`` a fresh interpreter holds after running ``imports``."""
    loaded = "{name.split('.')[0] for name in sys.modules}"
    code = f"import sys\n{imports}\nprint(','.join(sorted({loaded} & {set(packages)!r})))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [name for name in result.stdout.strip().split(",") if name]


def test_importing_feedwatch_loads_no_celery_and_no_workers() -> None:
    every_module = (
        "import importlib, pkgutil, feedwatch\n"
        "for m in pkgutil.walk_packages(feedwatch.__path__, 'feedwatch.'):\n"
        "    if '.migrations' in m.name or m.name.endswith('__main__'): continue\n"
        "    importlib.import_module(m.name)"
    )
    assert _loaded_after(every_module, ("celery", "workers")) == []


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:  # module level only: imports inside functions are deliberate and lazy
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_level_import_of_workers(path: Path) -> None:
    assert not {"workers", "celery"} & _module_level_imports(path)


@pytest.mark.parametrize("name", PURE)
def test_pure_stages_import_no_io(name: str) -> None:
    target = SRC / name
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for path in files:
        assert not IO_MODULES & _module_level_imports(path), path


def test_a_worker_loads_no_library_only_a_channel_or_the_full_text_stage_uses() -> None:
    """Every worker process imports ``workers.tasks``: the webhook channel's aiohttp (with its
    ``GuardedResolver``), Apprise and trafilatura load only where they are used, not in every
    worker process (aiohttp alone was ~6 MB of each, round 55)."""
    assert _loaded_after("import workers.tasks", ("aiohttp", "apprise", "trafilatura")) == []
