"""The README's examples run as written.

The convention: a ```python block that follows the line ``<!-- run -->``
(blank lines between them allowed) is runnable. The runnable blocks are
executed in the order they appear, in one namespace, so a later block may use
what an earlier one defined (the in-memory run uses the 20-line saga). Blocks
without the marker are sketches (they name the reader's own functions, or
need servers) and are only formatted by ruff.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"

_RUNNABLE = re.compile(r"^<!-- run -->\n(?:\s*\n)*```python\n(.*?)^```$", re.M | re.S)


def runnable_blocks(text: str) -> list[str]:
    return _RUNNABLE.findall(text)


def test_the_convention_finds_marked_blocks_only() -> None:
    text = "```python\nskipped\n```\n<!-- run -->\n\n```python\nx = 1\n```\n"
    assert runnable_blocks(text) == ["x = 1\n"]


def test_the_readme_has_runnable_blocks() -> None:
    # The 20-line saga and its in-memory run, at least.
    assert len(runnable_blocks(README.read_text())) >= 2


def test_the_readme_blocks_run_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real module: msgspec resolves a Struct's annotations in sys.modules.
    module = types.ModuleType("readme")
    monkeypatch.setitem(sys.modules, "readme", module)
    for number, block in enumerate(runnable_blocks(README.read_text()), 1):
        code = compile(block, f"README.md block {number}", "exec")
        exec(code, module.__dict__)  # the README's own code
    assert type(module.saga).__name__ == "SagaDefinition"
