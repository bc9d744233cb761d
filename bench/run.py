"""``make bench``: saga-coordinator against the floor (and Celery), on the real servers.

    python -m bench.run --quick            # a smoke run: 1 round, short windows
    python -m bench.run                    # the real run: 3 rounds, 1/64/512 in flight, scaling
    python -m bench.run --with-celery      # adds a Celery chain of three no-op tasks
    python -m bench.run --profile          # where the coordinator's time goes (py-spy + trace)

Servers come from ``SAGA_AMQP_URL`` / ``SAGA_REDIS_URL``; every measurement
runs in a fresh namespace that is deleted afterwards. Results: a table on
stdout and ``bench/results/latest.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import psutil
from redis.asyncio import Redis

from bench._drive import closed_loop, completed_memory, memory_probe
from bench._infra import LOGS, RESULTS, Config, load_average, median, server_processes
from bench._systems import SYSTEMS, System

FIGURES = [
    ("sagas_per_s", "sagas/s", "{:.0f}"),
    ("steps_per_s", "steps/s", "{:.0f}"),
    ("step_p50_ms", "step p50 ms", "{:.2f}"),
    ("step_p99_ms", "step p99 ms", "{:.2f}"),
    ("saga_p50_ms", "saga p50 ms", "{:.1f}"),
    ("saga_p99_ms", "saga p99 ms", "{:.1f}"),
]
CPU_ROLES = ["coordinator", "participant", "broker", "redis", "total"]


@dataclass
class Context:
    cfg: Config
    conn: aio_pika.abc.AbstractConnection
    redis: Redis
    servers: dict[str, list[psutil.Process]]


def _parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, ~2 s windows")
    p.add_argument("--rounds", type=int, help="rounds (median reported); default 3, quick 1")
    p.add_argument(
        "--levels", type=_parse_ints, help="in-flight levels; default 1,64,512, quick 1,64"
    )
    p.add_argument("--window", type=float, help="measured seconds per run; default 10, quick 2")
    p.add_argument("--warmup", type=float, help="seconds before the window; default 2, quick 0.5")
    p.add_argument("--systems", default="floor,ours", help=f"of {','.join(SYSTEMS)}")
    p.add_argument("--with-celery", action="store_true", help="add the Celery chain")
    p.add_argument(
        "--baseline",
        default="",
        help="source tree of another version of ours, run as ours-base alongside (A/B)",
    )
    p.add_argument(
        "--replicas",
        type=_parse_ints,
        help="coordinator replicas for the scaling run; default 1,2,4, quick none",
    )
    p.add_argument(
        "--scaling-level", type=int, help="in-flight level of the scaling run (max level)"
    )
    p.add_argument("--participants", type=int, default=1, help="participant processes per system")
    p.add_argument("--memory-sagas", type=int, help="sagas held in flight for the memory probe")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probe")
    p.add_argument("--latency-sample", type=int, default=500, help="sagas whose steps are timed")
    p.add_argument("--retention", type=int, default=600, help="seconds finished sagas are kept")
    p.add_argument(
        "--profile",
        nargs="?",
        const="pyspy,trace",
        default=None,
        help="only profile ours: pyspy,cprofile,trace (default pyspy,trace)",
    )
    p.add_argument("--profile-level", type=int, default=64, help="in-flight level for CPU profiles")
    p.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of ours and of the floor alike (auto: uvloop when installed)",
    )
    p.add_argument("--celery-pool", default="prefork")
    p.add_argument("--celery-concurrency", type=int, default=2)
    p.add_argument(
        "--amqp-url", default=os.environ.get("SAGA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("SAGA_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument("--out", default=str(RESULTS / "latest.json"))
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.levels = a.levels or ([1, 64] if a.quick else [1, 64, 512])
    a.window = a.window or (2.0 if a.quick else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if a.quick else 2.0)
    a.memory_sagas = a.memory_sagas or (128 if a.quick else 512)
    if a.replicas is None:
        a.replicas = [] if a.quick else [1, 2, 4]
    a.scaling_level = a.scaling_level or max(a.levels)
    a.systems = [s for s in a.systems.split(",") if s]
    if a.with_celery and "celery" not in a.systems:
        a.systems.append("celery")
    if a.baseline:
        a.baseline = str(Path(a.baseline).resolve())
        if not (Path(a.baseline) / "coordinator").is_dir():
            p.error(f"--baseline {a.baseline}: no coordinator/ package there")
        if "ours-base" not in a.systems:
            a.systems.append("ours-base")
    if "ours-base" in a.systems and not a.baseline:
        p.error("ours-base runs the checkout given by --baseline DIR")
    unknown = [s for s in a.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    return a


def _system(ctx: Context, name: str, replicas: int = 1) -> System:
    return SYSTEMS[name](ctx.cfg, ctx.conn, ctx.redis, replicas=replicas)


async def measure(
    ctx: Context, name: str, level: int, args: argparse.Namespace, replicas: int = 1
) -> dict[str, Any]:
    system = _system(ctx, name, replicas)
    try:
        await system.launch()
        result = await closed_loop(
            system,
            level,
            warmup=args.warmup,
            window=args.window,
            servers=ctx.servers,
            latency_sample=args.latency_sample,
        )
        finished = result.pop("_finished")
        result.update(await completed_memory(system, finished))
        result["log_problems"] = system.log_problems()[:10]
    finally:
        await system.close()
        await system.cleanup()
    return result


async def probe(ctx: Context, name: str, sagas: int) -> dict[str, Any]:
    system = _system(ctx, name)
    try:
        return await memory_probe(system, sagas, ctx.redis)
    finally:
        await system.close()
        await system.cleanup()


def _fmt(v: Any, f: str = "{:.2f}") -> str:
    return "-" if v is None else f.format(v)


def _progress(r: dict[str, Any], tag: str) -> None:
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


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Median over rounds, per system and level."""
    table: dict[str, dict[int, dict[str, Any]]] = {}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["system"], r["level"]), []).append(r)
    for (name, level), every in groups.items():
        rs = [r for r in every if not r["errors"]]  # a stalled or broken run says nothing
        row: dict[str, Any] = {k: median(r[k] for r in rs) for k, _, _ in FIGURES}
        row["cpu_ms_per_saga"] = {
            role: median(r["cpu_ms_per_saga"].get(role) for r in rs) for role in CPU_ROLES
        }
        row["completed_bytes_per_saga"] = median(r.get("completed_bytes_per_saga") for r in rs)
        row["rounds"] = len(rs)
        row["bad_runs"] = len(every) - len(rs)
        row["failed"] = sum(r["failed"] for r in rs)
        table.setdefault(name, {})[level] = row
    return table


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(table: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = {}
    floor = table.get("floor", {})
    for name, levels in table.items():
        if name == "floor":
            continue
        for level, row in levels.items():
            base = floor.get(level)
            if base is None:
                continue
            r = {k: _ratio(row[k], base[k]) for k, _, _ in FIGURES}
            r["cpu_ms_per_saga"] = {
                role: _ratio(row["cpu_ms_per_saga"][role], base["cpu_ms_per_saga"][role])
                for role in CPU_ROLES
            }
            r["completed_bytes_per_saga"] = _ratio(
                row["completed_bytes_per_saga"], base["completed_bytes_per_saga"]
            )
            out.setdefault(name, {})[level] = r
    return out


def print_table(
    table: dict[str, dict[int, dict[str, Any]]], rat: dict[str, dict[int, dict[str, Any]]]
) -> None:
    head = f"{'system':<10} {'L':>4} " + " ".join(f"{t:>11}" for _, t, _ in FIGURES)
    head += " | cpu ms/saga: " + " ".join(f"{r[:6]:>7}" for r in CPU_ROLES)
    print("\n" + head)
    print("-" * len(head))
    for name, levels in table.items():
        for level in sorted(levels):
            row = levels[level]
            line = f"{name:<10} {level:>4} " + " ".join(
                f"{_fmt(row[k], f):>11}" for k, _, f in FIGURES
            )
            line += " |              " + " ".join(
                f"{_fmt(row['cpu_ms_per_saga'][r], '{:.3f}'):>7}" for r in CPU_ROLES
            )
            print(line)
            ratio = rat.get(name, {}).get(level)
            if ratio:
                line = f"{'  /floor':<10} {'':>4} " + " ".join(
                    f"{_fmt(ratio[k], '{:.2f}x'):>11}" for k, _, _ in FIGURES
                )
                line += " |              " + " ".join(
                    f"{_fmt(ratio['cpu_ms_per_saga'][r], '{:.2f}x'):>7}" for r in CPU_ROLES
                )
                print(line)


def print_memory(
    mem: dict[str, dict[str, Any]],
    table: dict[str, dict[int, dict[str, Any]]],
    ttls: dict[str, Any],
) -> None:
    print("\nRedis bytes per saga: exact MEMORY USAGE of the keys (used_memory delta in brackets)")
    print(
        f"{'system':<10} {'in flight, step 1':>20} {'worst in flight':>18} {'coord+part':>12} "
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
            f"{name:<10} {both('first_bytes', 'used_memory_first'):>20} "
            f"{both('worst_bytes', 'used_memory_worst'):>18} {split:>12} "
            f"{_fmt(m.get('keys_per_saga'), '{:.1f}'):>5} {_fmt(completed, '{:.0f}'):>10}  "
            f"{ttls.get(name, {})}"
        )


def print_scaling(scaling: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nScaling: ours at {args.scaling_level} in flight, "
        f"{args.participants} participant process(es)"
    )
    print(
        f"{'replicas':>8} {'sagas/s':>9} {'steps/s':>9} {'saga p50 ms':>12} {'coord ms/saga':>14}"
    )
    for replicas in args.replicas:
        rs = [r for r in scaling if r["replicas"] == replicas and not r["errors"]]

        def med(key: str, fmt: str, rs: list[dict[str, Any]] = rs) -> str:
            return _fmt(median(r[key] for r in rs), fmt)

        coord = _fmt(median(r["cpu_ms_per_saga"]["coordinator"] for r in rs), "{:.3f}")
        print(
            f"{replicas:>8} {med('sagas_per_s', '{:.0f}'):>9} {med('steps_per_s', '{:.0f}'):>9} "
            f"{med('saga_p50_ms', '{:.1f}'):>12} {coord:>14}"
        )


def memory_medians(mem_runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in {m["system"] for m in mem_runs}:
        mine = [m for m in mem_runs if m["system"] == name]
        keys = [k for k in mine[0] if k not in ("system", "round")]
        out[name] = {k: median(m[k] for m in mine) for k in keys}
    return out


def targets(
    table: dict[str, dict[int, dict[str, Any]]],
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
        v = _ratio(ours[top]["sagas_per_s"], floor[top]["sagas_per_s"])
        add(
            f"throughput at {top} in flight vs floor", v, ">= 0.8x", None if v is None else v >= 0.8
        )
    if 1 in ours and 1 in floor:
        v = _ratio(ours[1]["step_p50_ms"], floor[1]["step_p50_ms"])
        add("per-step p50 at 1 in flight vs floor", v, "<= 1.5x", None if v is None else v <= 1.5)
    for level in sorted(set(ours) & set(celery)):
        v = _ratio(ours[level]["sagas_per_s"], celery[level]["sagas_per_s"])
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
        v = _ratio(o, f)
        add(
            f"coordinator CPU per step vs floor at {level}",
            v,
            "<= 1.5x",
            None if v is None else v <= 1.5,
        )
    return out


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


async def rounds(
    ctx: Context, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every level of every round, the systems taking turns to go first."""
    runs: list[dict[str, Any]] = []
    mem_runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}/{args.rounds}", flush=True)
        for i, level in enumerate(args.levels):
            k = (rnd + i) % len(args.systems)
            for name in args.systems[k:] + args.systems[:k]:
                r = await measure(ctx, name, level, args)
                r["round"] = rnd
                runs.append(r)
                _progress(r, f"{name} L={level}")
        if args.no_memory:
            continue
        for name in args.systems:
            if name == "celery":
                continue  # a chain's state travels in its messages; see its completed bytes
            m = await probe(ctx, name, args.memory_sagas)
            m["round"] = rnd
            mem_runs.append(m)
            print(
                f"  memory {name:<12} {m['worst_bytes']:.0f} B per in-flight saga (worst), "
                f"{m['first_bytes']:.0f} B at the first step",
                flush=True,
            )
    return runs, mem_runs


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cfg = Config(
        amqp_url=args.amqp_url,
        redis_url=args.redis_url,
        retention=args.retention,
        participants=args.participants,
        celery_pool=args.celery_pool,
        celery_concurrency=args.celery_concurrency,
        event_loop=args.event_loop,
        baseline=args.baseline,
    )
    conn = await aio_pika.connect(
        args.amqp_url, client_properties={"connection_name": "bench driver"}
    )
    redis = Redis.from_url(args.redis_url)
    ctx = Context(cfg, conn, redis, server_processes())
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "loadavg_before": load_average(),
        },
    }
    try:
        if args.profile:
            from bench._profile import run_profiles

            kinds = [k for k in args.profile.split(",") if k]
            report["profile"] = await run_profiles(
                kinds, args.profile_level, args.window, args.warmup, ctx
            )
            return report
        runs, mem_runs = await rounds(ctx, args)
        scaling: list[dict[str, Any]] = []
        for replicas in args.replicas:
            for rnd in range(args.rounds):
                r = await measure(ctx, "ours", args.scaling_level, args, replicas=replicas)
                r["round"] = rnd
                scaling.append(r)
                _progress(r, f"ours x{replicas} L={args.scaling_level}")
        table = aggregate(runs)
        rat = ratios(table)
        mem = memory_medians(mem_runs)
        ttls = {r["system"]: r["completed_ttl_s"] for r in runs}
        print_table(table, rat)
        print_memory(mem, table, ttls)
        if scaling:
            print_scaling(scaling, args)
        tgt = targets(table, mem, ttls, args.retention)
        print_targets(tgt, args.quick)
        report.update(
            runs=runs,
            table=table,
            ratios_vs_floor=rat,
            memory=mem,
            memory_runs=mem_runs,
            scaling=scaling,
            targets=tgt,
        )
        return report
    finally:
        report["machine"]["loadavg_after"] = load_average()
        await conn.close()
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shutil.rmtree(LOGS, ignore_errors=True)
    if args.with_celery or "celery" in args.systems:
        try:
            import celery  # noqa: F401
        except ImportError:
            sys.exit("--with-celery needs Celery: pip install -r bench/requirements.txt")
    print(
        f"bench: systems {args.systems}, levels {args.levels}, {args.rounds} round(s), "
        f"{args.window:g}s windows (+{args.warmup:g}s warm-up), load {load_average()[0]:.2f}"
        + (" [QUICK: noisy, indicative only]" if args.quick else ""),
        flush=True,
    )
    report = asyncio.run(main_async(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
