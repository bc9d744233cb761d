"""The benchmark's arithmetic: spread over rounds, the unsteady-floor flag, and the
ratios of repeated runs. Pure functions on made-up measurements; no servers."""

from __future__ import annotations

from typing import Any

import pytest

from bench._report import cell, print_repeats, unsteady_warnings
from bench._stats import aggregate, floor_moves, ratios, repeat_summary


def _run(
    system: str, level: int, sagas: float, *, errors: list[str] | None = None
) -> dict[str, Any]:
    return {
        "system": system,
        "level": level,
        "sagas_per_s": sagas,
        "steps_per_s": 3 * sagas,
        "step_p50_ms": 1000 / sagas,
        "step_p99_ms": None,
        "saga_p50_ms": 3000 / sagas,
        "saga_p99_ms": None,
        "cpu_ms_per_saga": {"coordinator": 1000 / sagas, "total": 2000 / sagas},
        "completed_bytes_per_saga": 500.0,
        "failed": 0,
        "errors": errors or [],
    }


def _table(floor: dict[int, list[float]], ours: dict[int, list[float]]) -> Any:
    runs = [_run("floor", lvl, s) for lvl, xs in floor.items() for s in xs]
    runs += [_run("ours", lvl, s) for lvl, xs in ours.items() for s in xs]
    return aggregate(runs)


def test_each_figure_has_its_median_and_its_min_and_max_over_the_rounds() -> None:
    stalled = _run("ours", 64, 1, errors=["stalled"])
    table = aggregate([*(_run("ours", 64, s) for s in (81, 65, 74, 10)), stalled])
    row = table["ours"][64]
    assert row["rounds"] == 4
    assert row["bad_runs"] == 1  # the stalled run is in no figure
    assert row["sagas_per_s"] == 69.5
    assert row["spread"]["sagas_per_s"] == [10, 81]
    assert row["spread"]["steps_per_s"] == [30, 243]
    assert row["spread"]["step_p99_ms"] == [None, None]
    assert row["spread"]["cpu_ms_per_saga"]["coordinator"] == [1000 / 81, 1000 / 10]
    assert row["spread"]["cpu_ms_per_saga"]["broker"] == [None, None]


def test_a_figure_is_shown_with_its_spread_when_there_were_rounds() -> None:
    assert cell(74.2, [65.0, 81.4], 3, "{:.0f}") == "74 (65-81)"
    assert cell(74.2, [74.2, 74.2], 1, "{:.0f}") == "74"
    assert cell(None, [None, None], 3, "{:.0f}") == "-"


def test_the_floor_is_flagged_where_it_moved_more_than_ten_percent_between_rounds() -> None:
    table = _table({1: [100, 109, 104], 64: [1000, 1111, 1050], 512: [900]}, {})
    moves = {m["level"]: m for m in floor_moves(table)}
    assert not moves[1]["unsteady"]
    assert round(moves[1]["moved"], 2) == 0.09
    assert moves[64]["unsteady"]
    assert (moves[64]["min"], moves[64]["max"]) == (1000, 1111)
    assert moves[512]["moved"] is None  # one round: nothing to compare
    assert not moves[512]["unsteady"]

    warnings = unsteady_warnings(list(moves.values()), " (run 2)")
    assert len(warnings) == 1
    assert warnings[0].startswith("WARNING (run 2): the floor moved 11% between rounds at 64")


def test_only_the_floor_is_judged_for_steadiness() -> None:
    table = _table({64: [1000, 1010]}, {64: [500, 900]})
    assert [m["level"] for m in floor_moves(table) if m["unsteady"]] == []


def test_repeat_summary_gives_each_runs_ratio_and_the_lowest() -> None:
    runs = [
        _table({1: [100], 64: [1000]}, {1: [90], 64: [850]}),
        _table({1: [100], 64: [1000]}, {1: [95], 64: [780]}),
        _table({1: [100]}, {1: [85], 64: [800]}),  # the floor's run at 64 broke
    ]
    summary = repeat_summary(runs)
    assert summary["columns"] == ["ours@1", "ours@64"]
    assert [r["ratios"] for r in summary["runs"]] == [
        {"ours@1": 0.9, "ours@64": 0.85},
        {"ours@1": 0.95, "ours@64": 0.78},
        {"ours@1": 0.85, "ours@64": None},
    ]
    assert summary["min"] == {"ours@1": 0.85, "ours@64": 0.78}
    assert summary["runs"][0]["floor"] == {1: 100, 64: 1000}
    assert [r["floor_unsteady"] for r in summary["runs"]] == [[], [], []]
    # Between runs the floor held, at 64 over the two runs that measured it.
    between = {m["level"]: (m["runs"], m["moved"], m["unsteady"]) for m in summary["floor_moves"]}
    assert between == {1: (3, 0, False), 64: (2, 0, False)}


def test_the_floor_is_flagged_where_it_moved_more_than_ten_percent_between_runs() -> None:
    summary = repeat_summary([_table({64: [1000]}, {64: [800]}), _table({64: [1200]}, {64: [900]})])
    [move] = summary["floor_moves"]
    assert move["unsteady"]
    assert (move["min"], move["max"]) == (1000, 1200)
    [line] = unsteady_warnings(summary["floor_moves"], between="runs")
    assert line.startswith("WARNING: the floor moved 20% between runs at 64 in flight")


def test_the_repeat_table_marks_the_runs_whose_floor_was_unsteady(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steady = _table({64: [1000, 1050]}, {64: [800, 820]})
    unsteady = _table({64: [1000, 1300]}, {64: [900, 1000]})
    summary = repeat_summary([steady, unsteady])
    assert [r["floor_unsteady"] for r in summary["runs"]] == [[], [64]]

    print_repeats(summary)
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["1"] == ["0.79x", "1025"]
    assert rows["2"] == ["0.83x!", "1150"]
    assert rows["min"] == ["0.79x"]


def test_ratios_are_of_the_medians() -> None:
    table = _table({64: [1000, 1200, 1100]}, {64: [800, 900, 1000]})
    assert ratios(table)["ours"][64]["sagas_per_s"] == 900 / 1100
