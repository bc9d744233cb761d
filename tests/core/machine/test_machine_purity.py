"""Example-based tests of the pure state machine: purity."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from machine_support import (
    ROOT,
)

# -- purity --------------------------------------------------------------------------------

FORBIDDEN = {
    "asyncio",
    "aio_pika",
    "aiormq",
    "redis",
    "opentelemetry",
    "socket",
    "time",
    "random",
    "uuid",
    "threading",
}


def test_the_core_imports_no_io_library() -> None:
    # ``coordinator/__init__`` re-exports the runtime (asyncio and friends), so the package
    # is stubbed: what is measured is what ``coordinator.core`` itself pulls in.
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('coordinator')\n"
        f"pkg.__path__ = [{str(ROOT / 'coordinator')!r}]\n"
        "sys.modules['coordinator'] = pkg\n"
        "import coordinator.core\n"
        "assert coordinator.core.decide\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'aio_pika', 'aiormq', 'redis', 'opentelemetry'})\n"
        "print(','.join(bad))\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('coordinator'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    bad, loaded = out.stdout.splitlines()
    assert bad == ""
    assert all(m == "coordinator" or m.startswith("coordinator.core") for m in loaded.split(","))


def test_the_core_source_imports_no_io_module() -> None:
    core = ROOT / "coordinator" / "core"
    files = sorted(core.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert not name.startswith(("coordinator.adapters", "coordinator.runtime")), (
                    f"{path.name} imports {name}"
                )
                assert top != "participants", f"{path.name} imports {name}"


def test_mypy_strict_passes_on_the_core() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mypy"), "--strict", "coordinator/core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
