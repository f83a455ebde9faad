"""The scripts of ``benchmarks/``: as modules, for tests of their pure parts, and run whole
(``bench_json``), for the tests of what they print."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import cache
from types import ModuleType
from typing import Any

from support.services import REPO


@cache
def bench_module(script: str) -> ModuleType:
    """``benchmarks/<script>.py``, loaded once as ``bench_<script>`` (registered in
    ``sys.modules``: its dataclasses look their module up). ``sys.path`` is left as it was:
    run.py puts benchmarks/ and src/ first when imported."""
    name = f"bench_{script}"
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
    return module


def bench_json(script: str, *args: str, timeout: float = 200) -> Any:
    """``benchmarks/<script> *args`` run to its end; the JSON object it printed."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)
