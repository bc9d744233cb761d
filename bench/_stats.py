"""From the measurements of one comparison to its figures: pure functions, no I/O.

A comparison is every system at every level, over several rounds. Its table
holds, per system and level, each figure's median over the rounds and its
spread (min and max), so a reader sees how much one figure could be trusted.
The floor's own spread says whether the machine held its speed: the floor
does the same work in every round, so when its throughput moves by more than
``FLOOR_STEADY`` between rounds, the machine drifted (another job, thermal
limits), and every ratio at that level is suspect. ``--repeat`` runs whole
comparisons again, and ``repeat_summary`` lines up their ratios to the floor,
so a claim must hold in each run, not in one lucky run.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "CPU_ROLES",
    "FIGURES",
    "FLOOR_STEADY",
    "Table",
    "aggregate",
    "floor_moves",
    "median",
    "memory_medians",
    "ratio",
    "ratios",
    "repeat_summary",
    "spread",
    "targets",
]

Table = dict[str, dict[int, dict[str, Any]]]

FIGURES = [
    ("sagas_per_s", "sagas/s", "{:.0f}"),
    ("steps_per_s", "steps/s", "{:.0f}"),
    ("step_p50_ms", "step p50 ms", "{:.2f}"),
    ("step_p99_ms", "step p99 ms", "{:.2f}"),
    ("saga_p50_ms", "saga p50 ms", "{:.1f}"),
    ("saga_p99_ms", "saga p99 ms", "{:.1f}"),
]
# ``collector``: the no-op OTLP receiver of the traced systems (in the total, as a
# real collector's work would be).
CPU_ROLES = ["coordinator", "participant", "broker", "redis", "collector", "total"]
# How far the floor's throughput may move between its slowest and its fastest
# round at one level (max/min - 1) before the run is flagged as unsteady.
FLOOR_STEADY = 0.10


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def spread(values: Iterable[float | None]) -> tuple[float | None, float | None, float | None]:
    """Median, min and max of the values present (``None``s are runs without the figure)."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None, None
    return statistics.median(present), min(present), max(present)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def aggregate(runs: Sequence[dict[str, Any]]) -> Table:
    """Median and spread over rounds, per system and level.

    Each row has the medians under the figures' keys (``sagas_per_s``...,
    ``cpu_ms_per_saga[role]``) and ``spread``: ``[min, max]`` under the same keys.
    """
    table: Table = {}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["system"], r["level"]), []).append(r)
    for (name, level), every in groups.items():
        rs = [r for r in every if not r["errors"]]  # a stalled or broken run says nothing
        row: dict[str, Any] = {}
        span: dict[str, Any] = {}
        for k, _, _ in FIGURES:
            row[k], lo, hi = spread(r[k] for r in rs)
            span[k] = [lo, hi]
        row["cpu_ms_per_saga"], span["cpu_ms_per_saga"] = {}, {}
        for role in CPU_ROLES:
            mid, lo, hi = spread(r["cpu_ms_per_saga"].get(role) for r in rs)
            row["cpu_ms_per_saga"][role] = mid
            span["cpu_ms_per_saga"][role] = [lo, hi]
        row["spread"] = span
        row["completed_bytes_per_saga"] = median(r.get("completed_bytes_per_saga") for r in rs)
        row["rounds"] = len(rs)
        row["bad_runs"] = len(every) - len(rs)
        row["failed"] = sum(r["failed"] for r in rs)
        table.setdefault(name, {})[level] = row
    return table


def ratios(table: Table) -> Table:
    """Each system's medians over the floor's, at the same level (ratios of medians)."""
    out: Table = {}
    floor = table.get("floor", {})
    for name, levels in table.items():
        if name == "floor":
            continue
        for level, row in levels.items():
            base = floor.get(level)
            if base is None:
                continue
            r: dict[str, Any] = {k: ratio(row[k], base[k]) for k, _, _ in FIGURES}
            r["cpu_ms_per_saga"] = {
                role: ratio(row["cpu_ms_per_saga"][role], base["cpu_ms_per_saga"][role])
                for role in CPU_ROLES
            }
            r["completed_bytes_per_saga"] = ratio(
                row["completed_bytes_per_saga"], base["completed_bytes_per_saga"]
            )
            out.setdefault(name, {})[level] = r
    return out


def floor_moves(table: Table, limit: float = FLOOR_STEADY) -> list[dict[str, Any]]:
    """How far the floor's throughput moved between rounds, per level.

    ``moved`` is max/min - 1 of its sagas/s over the rounds; ``unsteady`` is set
    when that is over ``limit``. A level measured in one round has nothing to
    compare (``moved`` None, not flagged).
    """
    out = []
    for level, row in sorted(table.get("floor", {}).items()):
        lo, hi = row["spread"]["sagas_per_s"]
        moved = hi / lo - 1 if row["rounds"] >= 2 and lo and hi is not None else None
        out.append(
            {
                "level": level,
                "rounds": row["rounds"],
                "min": lo,
                "max": hi,
                "moved": moved,
                "unsteady": moved is not None and moved > limit,
            }
        )
    return out


def repeat_summary(tables: Sequence[Table], figure: str = "sagas_per_s") -> dict[str, Any]:
    """Each run's ratio of each system to the floor at each level, and their minimum.

    ``tables`` are whole comparisons (one per ``--repeat``). A run where the floor
    or the system has no figure at a level leaves that ratio None; the minimum is
    over the runs that have one. Keys are ``"system@level"``, in the order met.
    Each run also has the floor's own figure and the levels where it was unsteady.
    """
    columns: list[str] = []
    runs: list[dict[str, Any]] = []
    for table in tables:
        floor = table.get("floor", {})
        row: dict[str, float | None] = {}
        for name, levels in table.items():
            if name == "floor":
                continue
            for level in sorted(levels):
                key = f"{name}@{level}"
                if key not in columns:
                    columns.append(key)
                base = floor.get(level, {}).get(figure)
                row[key] = ratio(levels[level].get(figure), base)
        runs.append(
            {
                "ratios": row,
                "floor": {level: floor[level].get(figure) for level in sorted(floor)},
                "floor_unsteady": [m["level"] for m in floor_moves(table) if m["unsteady"]],
            }
        )
    lowest: dict[str, float | None] = {}
    for key in columns:
        present = [v for r in runs if (v := r["ratios"].get(key)) is not None]
        lowest[key] = min(present) if present else None
    return {
        "figure": figure,
        "columns": columns,
        "runs": runs,
        "min": lowest,
        "floor_moves": _moves_between_runs(runs),
    }


def _moves_between_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Like ``floor_moves``, over the runs' medians: the machine can drift between
    runs as well as between rounds, and a one-round run has no rounds to compare."""
    out = []
    for level in sorted({level for r in runs for level in r["floor"]}):
        values = [v for r in runs if (v := r["floor"].get(level)) is not None]
        lo, hi = (min(values), max(values)) if values else (None, None)
        moved = hi / lo - 1 if len(values) >= 2 and lo and hi is not None else None
        out.append(
            {
                "level": level,
                "runs": len(values),
                "min": lo,
                "max": hi,
                "moved": moved,
                "unsteady": moved is not None and moved > FLOOR_STEADY,
            }
        )
    return out


def memory_medians(mem_runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in {m["system"] for m in mem_runs}:
        mine = [m for m in mem_runs if m["system"] == name]
        keys = [k for k in mine[0] if k not in ("system", "round")]
        out[name] = {k: median(m[k] for m in mine) for k in keys}
    return out


def targets(
    table: Table,
    mem: dict[str, dict[str, Any]],
    ttls: dict[str, Any],
    retention: int,
) -> list[dict[str, Any]]:
    ours, floor, celery = table.get("ours", {}), table.get("floor", {}), table.get("celery", {})
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": ok})

    top = max(ours) if ours else None
    if top is not None and top in floor:
        v = ratio(ours[top]["sagas_per_s"], floor[top]["sagas_per_s"])
        add(
            f"throughput at {top} in flight vs floor", v, ">= 0.8x", None if v is None else v >= 0.8
        )
    if 1 in ours and 1 in floor:
        v = ratio(ours[1]["step_p50_ms"], floor[1]["step_p50_ms"])
        add("per-step p50 at 1 in flight vs floor", v, "<= 1.5x", None if v is None else v <= 1.5)
    for level in sorted(set(ours) & set(celery)):
        v = ratio(ours[level]["sagas_per_s"], celery[level]["sagas_per_s"])
        add(f"throughput at {level} in flight vs Celery", v, "> 1x", None if v is None else v > 1)
    if "ours" in mem:
        v = mem["ours"].get("worst_bytes")
        add(
            "Redis bytes per in-flight saga (worst point, coord+participant)",
            v,
            "< 4096",
            None if v is None else v < 4096,
        )
    if "ours" in ttls:
        t = ttls["ours"]
        per_saga = {k: v for k, v in t.items() if not k.startswith("index")}
        ok = all(0 < v <= retention for v in per_saga.values()) if per_saga else None
        add(
            "finished saga's keys expire within the retention",
            max(per_saga.values(), default=None),
            f"0 < TTL <= {retention}",
            ok,
        )
    for level in sorted(set(ours) & set(floor)):
        o = ours[level]["cpu_ms_per_saga"]["coordinator"]
        f = floor[level]["cpu_ms_per_saga"]["coordinator"]
        v = ratio(o, f)
        add(
            f"coordinator CPU per step vs floor at {level}",
            v,
            "<= 1.5x",
            None if v is None else v <= 1.5,
        )
    return out
