"""``--profile``: where the coordinator's (and participant's) time goes, per step.

Three lenses, each on the real ``saga run`` process:

* ``pyspy``: CPU. py-spy samples the coordinator (250 Hz, on-CPU stacks only)
  during a closed-loop run; the stacks are folded into the phases of one input
  (decode, load, decide, commit, publish, ack...) and into the package of the
  innermost Python frame. Written to ``bench/results/profile-coordinator.txt``
  (folded stacks: open it in https://www.speedscope.app or flamegraph.pl).
* ``cprofile``: the same run under cProfile (slower, deterministic); prints the
  top functions by cumulative time and writes ``profile-coordinator.prof``.
* ``trace``: wall time. The hot-path methods of the coordinator and of the
  participant are wrapped with timers (``bench/_wrap.py``) at one saga in
  flight, where wall time is latency: the anatomy of one step.
"""

from __future__ import annotations

import json
import pstats
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._drive import closed_loop
from bench._infra import RESULTS
from bench._systems import Ours

INPUTS_PER_SAGA = 4  # StartSaga and three TaskCompleted
STEPS = 3
RATE = 250

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

Frame = tuple[str, str]  # (qualified name as py-spy prints it, file)
Stack = list[Frame]


def _has(stack: Stack, *quals: str, file: str = "") -> bool:
    return any(q in quals and file in f for q, f in stack)


def _leaf(stack: Stack, *quals: str) -> bool:
    return bool(stack) and stack[-1][0] in quals


def _lib(stack: Stack, *prefixes: str) -> bool:
    return any(f.startswith(prefixes) for _, f in stack)


# The coordinator's code moves; names of more than one generation are listed.
# Where the process spends its CPU, one bucket per sample: the first that matches.
_BUCKETS: list[tuple[str, Callable[[Stack], bool]]] = [
    ("startup (imports)", lambda s: _has(s, "_find_and_load")),
    ("Coordinator.handle: one input, end to end", lambda s: _has(s, "Coordinator.handle")),
    ("outbox: publish tasks (one per entry)", lambda s: _has(s, "OutboxPublisher._publish_one")),
    ("outbox: batched done flusher", lambda s: _has(s, "OutboxPublisher._flush_forever")),
    ("timer + outbox pollers", lambda s: _has(s, "Coordinator._every")),
    ("aiormq writer task (AMQP frames out)", lambda s: _has(s, "Connection.__writer")),
    ("aiormq reader (AMQP frames in, confirms)", lambda s: _lib(s, "aiormq/")),
    ("redis-py outside handle (the batcher's pipelines)", lambda s: _lib(s, "redis/")),
    ("consumer plumbing (outside handle)", lambda s: _lib(s, "coordinator/adapters/rabbitmq")),
    ("event loop: epoll wait", lambda s: _leaf(s, "EpollSelector.select")),
    ("event loop: scheduling, callbacks", lambda s: _lib(s, "asyncio/")),
    ("other", lambda s: True),
]

# Phases of one input, counted inclusively (a sample inside commit counts for _commit too).
# A send syscall is billed to the innermost Python frame: asyncio's transport on
# the standard loop, the StreamWriter call into uvloop's C transport on uvloop.
_WRITES = (
    "_SelectorSocketTransport.write",
    "_SelectorSocketTransport.writelines",
    "StreamWriter.write",
    "StreamWriter.writelines",
)
_PHASES: list[tuple[str, Callable[[Stack], bool]]] = [
    ("Coordinator.handle (all of it)", lambda s: _has(s, "Coordinator.handle")),
    ("  Codec.decode_inbound (input JSON)", lambda s: _has(s, "Codec.decode_inbound")),
    ("  Coordinator.load (cache miss)", lambda s: _has(s, "Coordinator.load")),
    ("    RedisSagaStore.load (HMGET via redis-py)", lambda s: _has(s, "RedisSagaStore.load")),
    ("    JSON decode of the state (load itself)", lambda s: _leaf(s, "Coordinator.load")),
    ("  core decide/start (pure)", lambda s: _has(s, "decide", "start", file="core/_machine")),
    ("  Coordinator._commit", lambda s: _has(s, "Coordinator._commit")),
    (
        "    build + encode commands, announcements",
        lambda s: (
            _has(s, "Coordinator._command", "Coordinator._lifecycle")
            or _has(s, "command_entry", "lifecycle_entry")
        ),
    ),
    ("    history entry (encode input + effects)", lambda s: _has(s, "_history", "history_entry")),
    ("    state encode etc. (_commit itself)", lambda s: _leaf(s, "Coordinator._commit")),
    ("    RedisSagaStore.commit (args + EVALSHA)", lambda s: _has(s, "RedisSagaStore.commit")),
    (
        "  outbox publish (aio-pika + confirm; own tasks too)",
        lambda s: (
            _has(s, "Coordinator._publish", "OutboxPublisher.publish")
            or _has(s, "OutboxPublisher._publish_one")
        ),
    ),
    ("  RabbitDelivery.ack", lambda s: _has(s, "RabbitDelivery.ack")),
    (
        "  redis-py code inside handle",
        lambda s: _has(s, "Coordinator.handle") and _lib(s, "redis/"),
    ),
    (
        "  aio-pika/aiormq/pamqp code inside handle",
        lambda s: _has(s, "Coordinator.handle") and _lib(s, "aio_pika/", "aiormq/", "pamqp/"),
    ),
    ("RedisSagaStore.done (wherever it runs)", lambda s: _has(s, "RedisSagaStore.done")),
    ("socket writes, all tasks (send syscalls)", lambda s: _leaf(s, *_WRITES)),
    (
        "  of which AMQP (aiormq writer task)",
        lambda s: _leaf(s, *_WRITES) and _has(s, "Connection.__writer"),
    ),
    ("  of which Redis", lambda s: _leaf(s, *_WRITES) and _lib(s, "redis/")),
]


_PARTICIPANT_BUCKETS: list[tuple[str, Callable[[Stack], bool]]] = [
    _BUCKETS[0],
    ("ParticipantWorker.handle: one command", lambda s: _has(s, "ParticipantWorker.handle")),
    *_BUCKETS[4:],
]
_PARTICIPANT_PHASES: list[tuple[str, Callable[[Stack], bool]]] = [
    ("ParticipantWorker.handle (all of it)", lambda s: _has(s, "ParticipantWorker.handle")),
    ("  Codec.decode_command", lambda s: _has(s, "Codec.decode_command")),
    (
        "  take the key, or find its reply (begin, via the batcher)",
        lambda s: _has(s, "RedisIdempotencyStore.begin"),
    ),
    ("  the handler (_execute)", lambda s: _has(s, "ParticipantWorker._execute")),
    (
        "  record the reply (finish, via the batcher)",
        lambda s: _has(s, "RedisIdempotencyStore.finish"),
    ),
    ("  reply publish (aio-pika + confirm)", lambda s: _has(s, "Publisher.publish")),
    ("  RabbitDelivery.ack", lambda s: _has(s, "RabbitDelivery.ack")),
    (
        "  redis-py code inside handle",
        lambda s: _has(s, "ParticipantWorker.handle") and _lib(s, "redis/"),
    ),
    ("socket writes, all tasks (send syscalls)", lambda s: _leaf(s, *_WRITES)),
    (
        "  of which AMQP (aiormq writer task)",
        lambda s: _leaf(s, *_WRITES) and _has(s, "Connection.__writer"),
    ),
    ("  of which Redis", lambda s: _leaf(s, *_WRITES) and _lib(s, "redis/")),
]


def _parse(line: str) -> tuple[Stack, int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames: Stack = []
    for raw in stack.split(";") if stack else []:
        m = _FRAME.match(raw.strip())
        frames.append((m["fn"], m["file"]) if m else (raw.strip(), ""))
    return frames, int(count) if count.isdigit() else 0


def _package(path: str) -> str:
    top = path.split("/", 1)[0] if "/" in path else path
    if top in ("coordinator", "contracts", "participants", "bench"):
        return "/".join(path.split("/")[:2]).removesuffix(".py")
    return top.removesuffix(".py") or "?"


def analyse_pyspy(
    path: Path,
    transitions: int,
    buckets_def: list[tuple[str, Callable[[Stack], bool]]] = _BUCKETS,
    phases_def: list[tuple[str, Callable[[Stack], bool]]] = _PHASES,
) -> dict[str, Any]:
    """Sample counts per bucket, phase, package and innermost frame, as shares.

    py-spy counts a sample whenever the thread is not idle, which on a busy
    machine includes time runnable but waiting for a core; so the shares are
    what to read, and ``us`` figures are the shares applied to the CPU that
    psutil measured per input.
    """
    stacks = [_parse(line) for line in path.read_text().splitlines() if line.strip()]
    steady = [(st, c) for st, c in stacks if not _has(st, "_find_and_load")]
    base = sum(c for _, c in steady) or 1
    buckets: Counter[str] = Counter()
    for st, c in steady:
        buckets[next(label for label, pred in buckets_def[1:] if pred(st))] += c
    phases = {label: sum(c for st, c in steady if pred(st)) for label, pred in phases_def}
    leaf_pkg: Counter[str] = Counter()
    leaf_fn: Counter[str] = Counter()
    for st, c in steady:
        if st:
            q, f = st[-1]
            leaf_pkg[_package(f)] += c
            leaf_fn[f"{q} ({f})"] += c
    return {
        "samples": sum(c for _, c in stacks),
        "steady_samples": base,
        "transitions": transitions,
        "buckets": {k: buckets[k] / base for k, _ in buckets_def[1:]},
        "phases": {k: v / base for k, v in phases.items()},
        "leaf_packages": {k: v / base for k, v in leaf_pkg.most_common(15)},
        "top_self": {k: v / base for k, v in leaf_fn.most_common(25)},
    }


def print_pyspy(
    a: dict[str, Any], measured: dict[str, float | None], who: str = "coordinator"
) -> None:
    cpu = measured.get("cpu_us")
    unit, per_saga = ("input", INPUTS_PER_SAGA) if who == "coordinator" else ("command", STEPS)
    to_step = per_saga / STEPS
    print(
        f"\n== {who}, py-spy: {a['steady_samples']} samples after startup at {RATE} Hz, "
        f"{a['transitions']} {unit}s ({a['transitions'] // per_saga} sagas x {per_saga}) =="
    )
    if cpu is not None:
        kernel = measured.get("kernel")
        print(
            f"psutil, in the window: {cpu:.0f} us CPU per {unit} ({cpu * to_step:.0f} per step)"
            + (f", {100 * kernel:.0f}% of it in the kernel" if kernel is not None else "")
        )
    print(f"Shares of samples; us = share x measured CPU per {unit}. Kernel time in a syscall")
    print("is billed to the Python frame that made it (socket write, epoll wait).")

    def rows(title: str, data: dict[str, float], width: int = 56) -> None:
        print(f"\n{title:<{width}} {'share':>6} {'us/' + unit:>10} {'us/step':>8}")
        for label, share in data.items():
            us = share * cpu if cpu is not None else None
            step = f"{us * to_step:8.0f}" if us is not None else "       -"
            shown = f"{us:10.0f}" if us is not None else "         -"
            print(f"  {label[: width - 2]:<{width - 2}} {100 * share:5.1f}% {shown} {step}")

    rows("where the process spends it (exclusive)", a["buckets"])
    rows(f"phases of one {unit} (inclusive)", a["phases"])
    rows("innermost Python frame, by package", a["leaf_packages"])
    rows("top innermost frames (C callees billed to them)", a["top_self"], 76)


def print_cprofile(path: Path, transitions: int, top: int = 25) -> None:
    stats = pstats.Stats(str(path))
    print(
        f"\n== cProfile of the coordinator: top {top} by cumulative time "
        f"({transitions} inputs; coroutine times are per resume, on-CPU) =="
    )
    stats.sort_stats("cumulative").print_stats(top)
    keys = [
        "handle",
        "load",
        "_commit",
        "commit",
        "_publish",
        "publish",
        "done",
        "decide",
        "_history",
        "_command",
        "ack",
        "decode_inbound",
    ]
    print("per input (cumulative us / input):")
    for (file, _line, fn), row in sorted(stats.stats.items(), key=lambda kv: -kv[1][3]):  # type: ignore[attr-defined]
        if fn in keys and ("coordinator" in file or "contracts" in file):
            print(
                f"  {fn:<18} {file.split('/work/main/')[-1]:<48} {row[3] * 1e6 / transitions:8.1f}"
            )


def print_trace(path: Path, sagas: int) -> None:
    data = json.loads(path.read_text())
    print(f"\n== wall time per phase at 1 saga in flight ({sagas} sagas; awaits included) ==")
    print(f"{'phase':<44} {'calls/saga':>10} {'us/call':>9} {'us/step':>9}")
    for label, row in sorted(data.items(), key=lambda kv: -kv[1]["total_s"]):
        calls = row["calls"]
        if not calls:
            continue
        print(
            f"{label:<44} {calls / sagas:10.2f} {row['total_s'] * 1e6 / calls:9.1f} "
            f"{row['total_s'] * 1e6 / sagas / STEPS:9.1f}"
        )


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _measured(result: dict[str, Any], role: str, per_saga: int) -> dict[str, float | None]:
    ms = result["cpu_ms_per_saga"].get(role)
    return {
        "cpu_us": ms * 1000 / per_saga if ms is not None else None,
        "kernel": result["cpu_kernel_share"].get(role),
    }


def _ours(kind: str, ctx: Any) -> tuple[Ours, dict[str, Path], int | None]:
    if kind == "trace":
        files = {"coordinator": RESULTS / "trace-coordinator.json"}
        files["participant"] = RESULTS / "trace-participant.json"
        level: int | None = 1
    elif kind == "pyspy":
        files = {"coordinator": RESULTS / "profile-coordinator.txt"}
        files["participant"] = RESULTS / "profile-participant.txt"
        level = None
    else:
        files = {"coordinator": RESULTS / "profile-coordinator.prof"}
        level = None
    system = Ours(
        ctx.cfg,
        ctx.conn,
        ctx.redis,
        wrap=(kind, files["coordinator"]),
        wrap_participant=(kind, files["participant"]) if "participant" in files else None,
    )
    return system, files, level


async def run_profiles(
    kinds: list[str], level: int, window: float, warmup: float, ctx: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        system, files, fixed_level = _ours(kind, ctx)
        run_level = fixed_level or level
        try:
            await system.launch()
            result = await closed_loop(
                system,
                run_level,
                warmup=warmup,
                window=window,
                servers=ctx.servers,
                latency_sample=200,
            )
        finally:
            await system.close()
            await system.cleanup()
        sagas = len(result.pop("_finished"))
        rate = "-" if result["sagas_per_s"] is None else f"{result['sagas_per_s']:.0f}"
        print(f"\n[profile {kind}] {run_level} in flight: {rate} sagas/s profiled, {sagas} sagas")
        out[kind] = {"run": result, "files": {k: str(v) for k, v in files.items()}}
        if kind == "pyspy":
            coord = analyse_pyspy(files["coordinator"], sagas * INPUTS_PER_SAGA)
            print_pyspy(coord, _measured(result, "coordinator", INPUTS_PER_SAGA))
            part = analyse_pyspy(
                files["participant"], sagas * STEPS, _PARTICIPANT_BUCKETS, _PARTICIPANT_PHASES
            )
            print_pyspy(part, _measured(result, "participant", STEPS), "participant")
            out[kind].update(coordinator=coord, participant=part)
        elif kind == "cprofile":
            print_cprofile(files["coordinator"], sagas * INPUTS_PER_SAGA)
        else:
            for who, path in files.items():
                print(f"-- {who} --")
                print_trace(path, sagas)
                out[kind][who] = json.loads(path.read_text())
    return out
