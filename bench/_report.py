"""The benchmark's printed report: progress lines, tables, warnings, targets.

Figures come from ``bench._stats``; this module only lays them out. A figure
measured over several rounds is shown as ``median (min-max)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from bench._stats import CPU_ROLES, FIGURES, FLOOR_STEADY, Table, median

__all__ = [
    "cell",
    "print_memory",
    "print_repeats",
    "print_scaling",
    "print_table",
    "print_targets",
    "progress",
    "unsteady_warnings",
]


def _fmt(v: Any, f: str = "{:.2f}") -> str:
    return "-" if v is None else f.format(v)


def cell(mid: float | None, span: Sequence[float | None], rounds: int, f: str) -> str:
    """``74 (65-81)``: the median and, when there were rounds to spread over, min-max."""
    if mid is None or rounds < 2:
        return _fmt(mid, f)
    lo, hi = span
    return f"{_fmt(mid, f)} ({_fmt(lo, f)}-{_fmt(hi, f)})"


def progress(r: dict[str, Any], tag: str) -> None:
    cpu = r["cpu_ms_per_saga"]
    extra = f" FAILED {r['failed']}" if r["failed"] else ""
    extra += f" ERRORS {r['errors'][:2]}" if r["errors"] else ""
    extra += f" LOG {r['log_problems'][:2]}" if r.get("log_problems") else ""
    print(
        f"  {tag:<26} {_fmt(r['sagas_per_s'], '{:7.0f}')} sagas/s  "
        f"step p50 {_fmt(r['step_p50_ms'])} ms  saga p50 {_fmt(r['saga_p50_ms'], '{:.1f}')} ms  "
        f"cpu ms/saga coord {_fmt(cpu.get('coordinator'))} part {_fmt(cpu.get('participant'))} "
        f"broker {_fmt(cpu.get('broker'))} redis {_fmt(cpu.get('redis'))}{extra}",
        flush=True,
    )


def _columns(
    table: Table,
    rat: Table,
    title: str,
    heads: list[str],
    cells: Callable[[dict[str, Any]], list[str]],
    ratio_cells: Callable[[dict[str, Any]], list[str]],
) -> None:
    """One table: a row per system and level, the row of its ratios to the floor under it."""
    rows: list[tuple[str, str, list[str]]] = []
    for name, levels in table.items():
        for level in sorted(levels):
            rows.append((name, str(level), cells(levels[level])))
            ratio = rat.get(name, {}).get(level)
            if ratio:
                rows.append(("  /floor", "", ratio_cells(ratio)))
    widths = [max([len(h)] + [len(r[2][i]) for r in rows]) for i, h in enumerate(heads)]
    head = f"{'system':<15} {'L':>4}  " + "  ".join(
        f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)
    )
    print(f"\n{title}\n{head}\n{'-' * len(head)}")
    for name, shown_level, values in rows:
        print(
            f"{name:<15} {shown_level:>4}  "
            + "  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        )


def print_table(table: Table, rat: Table) -> None:
    """Throughput and latency, then CPU per saga: medians over rounds (min-max)."""
    rounds = max((row["rounds"] for levels in table.values() for row in levels.values()), default=0)
    how = f"median over {rounds} rounds (min-max)" if rounds >= 2 else "one round"
    _columns(
        table,
        rat,
        f"Throughput and latency, {how}; under each row its ratio to the floor's median",
        [t for _, t, _ in FIGURES],
        lambda row: [cell(row[k], row["spread"][k], row["rounds"], f) for k, _, f in FIGURES],
        lambda r: [_fmt(r[k], "{:.2f}x") for k, _, _ in FIGURES],
    )
    _columns(
        table,
        rat,
        f"CPU ms per saga, {how}",
        CPU_ROLES,
        lambda row: [
            cell(
                row["cpu_ms_per_saga"][role],
                row["spread"]["cpu_ms_per_saga"][role],
                row["rounds"],
                "{:.3f}",
            )
            for role in CPU_ROLES
        ],
        lambda r: [_fmt(r["cpu_ms_per_saga"][role], "{:.2f}x") for role in CPU_ROLES],
    )


def unsteady_warnings(
    moves: list[dict[str, Any]], run: str = "", between: str = "rounds"
) -> list[str]:
    """A warning line per level where the floor moved more than ``FLOOR_STEADY``."""
    return [
        f"WARNING{run}: the floor moved {m['moved']:.0%} between {between} at {m['level']} "
        f"in flight ({m['min']:.0f}-{m['max']:.0f} sagas/s, limit {FLOOR_STEADY:.0%}): "
        "the machine's speed drifted, ratios at this level are suspect"
        for m in moves
        if m["unsteady"]
    ]


def print_memory(
    mem: dict[str, dict[str, Any]],
    table: Table,
    ttls: dict[str, Any],
) -> None:
    print("\nRedis bytes per saga: exact MEMORY USAGE of the keys (used_memory delta in brackets)")
    print(
        f"{'system':<15} {'in flight, step 1':>20} {'worst in flight':>18} {'coord+part':>12} "
        f"{'keys':>5} {'completed':>10}  TTL (s) of a finished saga's keys"
    )
    for name in table:
        m = mem.get(name, {})
        completed = median(row.get("completed_bytes_per_saga") for row in table[name].values())

        def both(exact: str, used: str, m: dict[str, Any] = m) -> str:
            return f"{_fmt(m.get(exact), '{:.0f}')} [{_fmt(m.get(used), '{:.0f}')}]"

        coord = _fmt(m.get("worst_coordinator_bytes"), "{:.0f}")
        split = f"{coord}+{_fmt(m.get('worst_participant_bytes'), '{:.0f}')}"
        print(
            f"{name:<15} {both('first_bytes', 'used_memory_first'):>20} "
            f"{both('worst_bytes', 'used_memory_worst'):>18} {split:>12} "
            f"{_fmt(m.get('keys_per_saga'), '{:.1f}'):>5} {_fmt(completed, '{:.0f}'):>10}  "
            f"{ttls.get(name, {})}"
        )


def print_scaling(scaling: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nScaling: ours at {args.scaling_level} in flight, "
        f"{args.participants} participant process(es), median (min-max) over rounds"
    )
    print(
        f"{'replicas':>8} {'sagas/s':>18} {'steps/s':>18} {'saga p50 ms':>20} {'coord ms/saga':>22}"
    )
    for replicas in args.replicas:
        rs = [r for r in scaling if r["replicas"] == replicas and not r["errors"]]

        def med(values: list[float | None], f: str, n: int = len(rs)) -> str:
            present = [v for v in values if v is not None]
            if not present:
                return "-"
            return cell(median(present), [min(present), max(present)], n, f)

        print(
            f"{replicas:>8} {med([r['sagas_per_s'] for r in rs], '{:.0f}'):>18} "
            f"{med([r['steps_per_s'] for r in rs], '{:.0f}'):>18} "
            f"{med([r['saga_p50_ms'] for r in rs], '{:.1f}'):>20} "
            f"{med([r['cpu_ms_per_saga']['coordinator'] for r in rs], '{:.3f}'):>22}"
        )


def print_targets(rows: list[dict[str, Any]], quick: bool) -> None:
    note = " (quick run: indicative only)" if quick else ""
    print(f"\nTargets{note}")
    for t in rows:
        mark = {True: "PASS", False: "MISS", None: "n/a "}[t["met"]]
        v = t["value"]
        shown = (
            "-" if v is None else (f"{v:.2f}" if isinstance(v, float) and v < 100 else f"{v:.0f}")
        )
        print(f"  [{mark}] {t['target']:<66} {shown:>8}  goal {t['goal']}")


def print_repeats(summary: dict[str, Any]) -> None:
    """One row per run: each system's throughput over the floor's at each level, then
    the lowest of the runs. A ``!`` marks the levels where that run's floor moved
    more than allowed between rounds."""
    columns = summary["columns"]
    floors = sorted({level for run in summary["runs"] for level in run["floor"]})
    heads = [*columns, *(f"floor@{level}" for level in floors)]
    width = max([9, *(len(h) for h in heads)])
    print(
        f"\nEach run's ratio to the floor ({summary['figure']}, medians of the run's rounds; "
        f"! = the floor moved more than {FLOOR_STEADY:.0%} between rounds there), "
        "and the floor's own figure"
    )
    print(f"{'run':<5} " + " ".join(f"{h:>{width}} " for h in heads))
    for i, run in enumerate(summary["runs"]):
        shown = []
        for key in columns:
            level = int(key.rsplit("@", 1)[1])
            mark = "!" if level in run["floor_unsteady"] else " "
            shown.append(f"{_fmt(run['ratios'].get(key), '{:.2f}x'):>{width}}{mark}")
        shown += [f"{_fmt(run['floor'].get(level), '{:.0f}'):>{width}} " for level in floors]
        print(f"{i + 1:<5} " + " ".join(shown))
    lowest = [_fmt(summary["min"][key], "{:.2f}x") for key in columns]
    print(f"{'min':<5} " + " ".join(f"{v:>{width}} " for v in lowest))
