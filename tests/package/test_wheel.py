"""The built wheel, installed in a fresh virtual environment, as a newcomer gets it.

Its own target (``make package``, run by ``.ci/run``), not part of ``make
test``: it builds the wheel (``pip wheel``, hatchling from the configured
index), creates a venv and installs the wheel and its dependencies there, which
takes most of a minute. Nothing from this checkout is importable in that venv:
``PYTHONPATH`` is dropped and the commands run outside the repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]

pytestmark = pytest.mark.timeout(600)


class Venv:
    def __init__(self, root: Path) -> None:
        self.root, self.bin = root, root / "bin"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        timeout=300,
    )
    (built,) = dist.glob("saga_coordinator-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    made = Venv(root)
    # pytest: for the test `saga init` writes, which a newcomer runs with it.
    made.run(str(made.bin / "pip"), "install", "-q", str(wheel), "pytest", cwd=root)
    yield made


def test_the_wheel_ships_the_type_markers_and_no_top_level_examples(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("coordinator", "participants", "contracts"):
        assert f"{package}/py.typed" in names
    tops = {name.split("/")[0] for name in names if not name.startswith("saga_coordinator-")}
    assert tops == {"coordinator", "participants", "contracts"}
    assert "coordinator/examples/starter/README.md" in names


def test_the_installed_package_is_the_wheel(venv: Venv, tmp_path: Path) -> None:
    found = venv.run(
        str(venv.bin / "python"),
        "-c",
        "import coordinator; print(coordinator.__file__)",
        cwd=tmp_path,
    )
    assert Path(found.stdout.strip()).is_relative_to(venv.root)
    assert venv.run(str(venv.bin / "saga"), "--version", cwd=tmp_path).stdout.startswith(
        "saga-coordinator "
    )


def test_saga_demo_runs_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    done = venv.run(str(venv.bin / "saga"), "demo", cwd=tmp_path)
    assert "all 8 sagas ended as expected" in done.stdout


def test_saga_init_and_its_test_run_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    venv.run(str(venv.bin / "saga"), "init", "booking", cwd=tmp_path)
    tested = venv.run(
        str(venv.bin / "python"),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "booking",
        cwd=tmp_path,
    )
    assert "2 passed" in tested.stdout
