"""``saga init NAME`` and ``saga --version``, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def saga(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "saga"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def generated_tests_pass(folder: Path) -> subprocess.CompletedProcess[str]:
    """Run pytest on the generated test from the folder's parent, outside this
    repo's configuration (its rootdir is the parent: no conftest, no ini)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", folder.name],
        cwd=folder.parent,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_is_the_package_metadata(tmp_path: Path) -> None:
    done = saga("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"saga-coordinator {version('saga-coordinator')}"


def test_init_writes_a_saga_whose_test_passes_as_written(tmp_path: Path) -> None:
    done = saga("init", "booking", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "booking"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "__init__.py",
        "messages.py",
        "saga.py",
        "services.py",
        "test_saga.py",
    ]
    # The name is the package's and the saga's; the template's own is gone.
    assert 'Saga("booking"' in (folder / "saga.py").read_text()
    assert "saga run --saga booking.saga:saga" in (folder / "README.md").read_text()
    for file in folder.iterdir():
        assert "starter" not in file.read_text(), file.name
    tested = generated_tests_pass(folder)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout


def test_init_names_the_saga_that_the_cli_then_loads(tmp_path: Path) -> None:
    assert saga("init", "trips", cwd=tmp_path).returncode == 0
    graph = saga("graph", "trips.saga:saga", cwd=tmp_path)
    assert graph.returncode == 0, graph.stderr
    assert "hold" in graph.stdout and "charge" in graph.stdout


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("taken", "exists; choose another name or remove it"),
        ("1st", "is not a Python package name"),
        ("json", "would hide the module of that name"),
    ],
)
def test_init_refuses_in_one_line(tmp_path: Path, name: str, says: str) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    done = saga("init", name, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
