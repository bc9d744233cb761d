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
from bench._infra import LOGS, RESULTS, Config, load_average, server_processes
from bench._menu import SYSTEMS
from bench._report import (
    print_memory,
    print_repeats,
    print_scaling,
    print_table,
    print_targets,
    progress,
    unsteady_warnings,
)
from bench._stats import (
    aggregate,
    floor_moves,
    memory_medians,
    ratios,
    repeat_summary,
    targets,
)
from bench._systems import System


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
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the whole comparison N times; prints each run's ratios to the floor",
    )
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
    if a.repeat < 1:
        p.error("--repeat N needs N >= 1")
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


async def compare(ctx: Context, args: argparse.Namespace, run: int) -> dict[str, Any]:
    """One whole comparison: its rounds, then its tables, warnings and targets."""
    runs, mem_runs = await rounds(ctx, args)
    table = aggregate(runs)
    rat = ratios(table)
    mem = memory_medians(mem_runs)
    ttls = {r["system"]: r["completed_ttl_s"] for r in runs}
    moves = floor_moves(table)
    tag = f" (run {run + 1})" if args.repeat > 1 else ""
    warnings = unsteady_warnings(moves, tag)
    print_table(table, rat)
    for line in warnings:
        print(line)
    print_memory(mem, table, ttls)
    tgt = targets(table, mem, ttls, args.retention)
    print_targets(tgt, args.quick)
    return {
        "runs": runs,
        "table": table,
        "ratios_vs_floor": rat,
        "floor_moves": moves,
        "floor_unsteady": any(m["unsteady"] for m in moves),
        "warnings": warnings,
        "memory": mem,
        "memory_runs": mem_runs,
        "targets": tgt,
    }


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
                progress(r, f"{name} L={level}")
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
        comparisons = []
        for run in range(args.repeat):
            if args.repeat > 1:
                print(f"\n== run {run + 1}/{args.repeat}", flush=True)
            comparisons.append(await compare(ctx, args, run))
        scaling: list[dict[str, Any]] = []
        for replicas in args.replicas:
            for rnd in range(args.rounds):
                r = await measure(ctx, "ours", args.scaling_level, args, replicas=replicas)
                r["round"] = rnd
                scaling.append(r)
                progress(r, f"ours x{replicas} L={args.scaling_level}")
        if scaling:
            print_scaling(scaling, args)
        summary = repeat_summary([c["table"] for c in comparisons])
        if args.repeat > 1:
            print_repeats(summary)
        warnings = [w for c in comparisons for w in c["warnings"]]
        if args.repeat > 1:
            warnings += unsteady_warnings(summary["floor_moves"], between="runs")
        for line in warnings:
            print(line)  # again at the end, where a reader of the summary looks
        report.update(
            repeats=comparisons,
            repeat_summary=summary,
            scaling=scaling,
            floor_unsteady=any(c["floor_unsteady"] for c in comparisons)
            or any(m["unsteady"] for m in summary["floor_moves"]),
            warnings=warnings,
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
