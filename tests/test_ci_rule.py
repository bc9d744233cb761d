"""The CI rule of tests/conftest.py: under CI a skip fails the run."""

from __future__ import annotations

import pytest
from servers import fail_skip_in_ci, in_ci


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("1", True),
        ("true", True),
        ("yes", True),
    ],
)
def test_what_counts_as_ci(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_unset_is_not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()


def _skipped() -> pytest.TestReport:
    return pytest.TestReport(
        "t.py::x", ("t.py", 1, "x"), {}, "skipped", ("t.py", 1, "Skipped: no server"), "call"
    )


def test_a_skip_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    report = _skipped()
    fail_skip_in_ci(report)
    assert report.outcome == "failed"
    assert "no server" in str(report.longrepr)


def test_a_skip_stays_a_skip_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    report = _skipped()
    fail_skip_in_ci(report)
    assert report.outcome == "skipped"
