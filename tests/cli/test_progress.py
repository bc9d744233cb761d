"""Progress on stderr: shown on a terminal or with --progress, never on stdout."""

from __future__ import annotations

import sys

import pytest

from coordinator.cli._progress import progress, progress_of, wanted


def test_shown_by_default_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert (wanted(None), wanted(True), wanted(False)) == (False, True, False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert (wanted(None), wanted(True), wanted(False)) == (True, True, False)


def test_asked_for_off_a_terminal_it_is_a_counter_a_log_can_keep(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress("replaying order.place", 3, True, detail="{diverged} diverged") as advance:
        advance(1)
        advance(1, diverged=1)
        advance(1)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "replaying order.place: 0/3 (0 diverged)",
        "replaying order.place: 1/3 (0 diverged)",
        "replaying order.place: 2/3 (1 diverged)",
        "replaying order.place: 3/3 (1 diverged)",
    ]


def test_not_asked_for_it_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("replaying", 2, False) as advance:
        advance(2)
    with progress_of("moving", False) as report:
        report(0, 5)
        report(5, 5)
    assert capsys.readouterr() == ("", "")


def test_a_total_known_late_opens_the_counter_at_the_first_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress_of("moving dead letters back", True) as report:
        report(0, 4)
        report(3, 4)
        report(3, 4)  # a queue with nothing moved: no line
        report(4, 4)
    assert capsys.readouterr().err.splitlines() == [
        "moving dead letters back: 0/4",
        "moving dead letters back: 3/4",
        "moving dead letters back: 4/4",
    ]


def test_on_a_terminal_it_is_a_bar_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "0")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    with progress("replaying order.place", 2, None, detail="{diverged} diverged") as advance:
        advance(2, diverged=1)
    out, _ = capsys.readouterr()
    assert out == ""
