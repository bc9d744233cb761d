"""Run a ``saga`` command under cProfile or under wall-clock phase timers.

``python -m bench._wrap --cprofile OUT.prof -- run --saga bench.saga3:saga``
``python -m bench._wrap --trace OUT.json -- participant bench.saga3:services``

``--trace`` wraps the methods of the hot path (coordinator and participant
side) with timers and writes, per method, the number of calls and the total
wall time spent in them (awaits included). Nothing in ``coordinator/`` is
changed: the classes are patched in this process only. The timers cost about
a microsecond per call, so run it at low concurrency, where wall time is
latency: at one saga in flight each phase's mean is its share of a step.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import inspect
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

_calls: dict[str, int] = defaultdict(int)
_ns: dict[str, int] = defaultdict(int)


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter_ns()
            try:
                return await fn(*args, **kwargs)
            finally:
                _ns[label] += time.perf_counter_ns() - t
                _calls[label] += 1

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            _ns[label] += time.perf_counter_ns() - t
            _calls[label] += 1

    return timed


def _patch(owner: Any, name: str, label: str) -> None:
    found = getattr(owner, name, None)
    if found is None:  # renamed since this was written: time what is still there
        print(f"bench._wrap: {owner.__name__}.{name} not found, not timed", file=sys.stderr)
        return
    setattr(owner, name, _timed(label, found))


def install() -> None:
    """Wrap the hot path: what one input costs, phase by phase."""
    from coordinator.runtime import _coordinator, _transition

    c = _coordinator.Coordinator
    for name in ("handle", "start_saga"):
        _patch(c, name, f"coordinator.{name}")
    t = _transition.Transitions
    for name in ("apply", "start", "load", "_commit"):
        _patch(t, name, f"transition.{name}")
    _patch(_transition, "decide", "core.decide (sync)")
    for name in ("command_entry", "lifecycle_entry", "history_entry"):
        _patch(_transition, name, f"translate.{name} (sync)")
    try:
        from coordinator.runtime import _outbox
    except ImportError:
        pass
    else:
        for name in ("publish", "_publish_one", "_flush"):
            _patch(_outbox.OutboxPublisher, name, f"outbox.{name}")
    _install_coordinator_stores()
    _install_participant()


def _install_coordinator_stores() -> None:
    from contracts import Codec
    from coordinator.adapters.rabbitmq import _delivery, _publisher
    from coordinator.adapters.redis import _store

    s = _store.RedisSagaStore
    for name in ("load", "commit", "done", "record"):
        _patch(s, name, f"redis_store.{name}")
    _patch(Codec, "decode_inbound", "codec.decode_inbound (sync)")
    _patch(Codec, "decode_command", "codec.decode_command (sync)")
    _patch(Codec, "encode", "codec.encode (sync)")
    _patch(_publisher.Publisher, "publish", "amqp.publish+confirm")
    _patch(_delivery.RabbitDelivery, "ack", "amqp.ack")


def _install_participant() -> None:
    from coordinator.adapters.redis import _idempotency
    from participants import _holds, _worker

    w = _worker.ParticipantWorker
    for name in ("handle", "_answer", "_run_and_reply", "_execute"):
        _patch(w, name, f"participant.{name}")
    _patch(_holds.KeyHolds, "wait_for_turn", "participant.wait_for_turn")
    i = _idempotency.RedisIdempotencyStore
    for name in ("begin", "finish"):
        _patch(i, name, f"idempotency.{name}")


def _dump_trace(path: str) -> None:
    data = {k: {"calls": _calls[k], "total_s": _ns[k] / 1e9} for k in sorted(_calls)}
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._wrap")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--cprofile", metavar="OUT")
    group.add_argument("--trace", metavar="OUT")
    parser.add_argument("saga_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    saga_args = [a for a in args.saga_args if a != "--"]

    from coordinator.cli._app import main as saga_main

    sys.argv = ["saga", *saga_args]
    if args.trace:
        install()
        try:
            saga_main()
        except SystemExit:
            pass
        finally:
            _dump_trace(args.trace)
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        saga_main()
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(args.cprofile)


if __name__ == "__main__":
    main()
