"""The floor: the least any correct saga coordinator must do per step, by hand.

Two processes, no framework:

``python -m bench.floor coordinator --ns NS``
    Consumes ``{ns}.coordinator.events``. Per input: one Redis Lua
    compare-and-set of a small state (read the version, compare, write, set the
    TTL when done), then one publish with publisher confirms (the next command,
    or the ``completed`` announcement on ``{ns}.lifecycle``), then the ack.

``python -m bench.floor responder --ns NS [--protocol floor|saga] [--hold-step K]``
    Consumes ``{ns}.bench.commands``; per command: decode, publish the reply
    with confirms, ack. ``--protocol saga`` speaks saga-coordinator's wire
    format instead (``Command`` in, ``TaskCompleted`` out), so the real
    coordinator can be measured against a participant that does nothing else.
    ``--hold-step K`` acks step K's commands without answering (sagas stay in
    flight there, for the memory probe).

The same durability as saga-coordinator: the same exchanges (durable topic),
quorum queues declared with the very same arguments (imported from the
coordinator's topology), persistent messages, publisher confirms, ``mandatory``
for commands, manual acks after the work, the same prefetch (64 for the
coordinator, 16 for the responder). What the floor does *not* do, on purpose:
read its state (the messages carry the small saga data, so the CAS needs no
prior read), keep a history, an outbox, a dedupe set or timers, or announce
``started``. A duplicate input fails the version compare and is acked and
dropped, which is the minimum correct dedupe.

Per-step latency: the coordinator stamps when it starts handling each input,
the stamp travels in the command and comes back in the reply, and the
difference is appended to a list that the ``completed`` message carries: the
same points saga-coordinator's history timestamps mark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
import msgspec
from redis.asyncio import Redis

from contracts import DEFAULT_CODEC, Command, TaskCompleted
from coordinator.adapters.rabbitmq._topology import dead_queue_arguments, queue_arguments
from coordinator.service import run_loop

STEPS = 3
EXCHANGES = ("commands", "events", "lifecycle", "dead")
COORDINATOR_PREFETCH = 64  # what Coordinator.start subscribes with
RESPONDER_PREFETCH = 16  # ParticipantWorker's default
DELIVERY_LIMIT = 5  # SAGA_DELIVERY_LIMIT's default

# KEYS: state hash. ARGV: expected version, new version, state, ttl (0: none).
CAS = """
local cur = redis.call('HGET', KEYS[1], 'v')
cur = cur and tonumber(cur) or -1
if cur ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
if ARGV[4] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


class Msg(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every floor message: a start (k=-1), a command for step k, its reply, or done."""

    id: str
    k: int = -1
    v: int = -1
    ti: float = 0.0  # when the coordinator started handling the input that sent it
    lat: list[float] = msgspec.field(default_factory=list)
    d: dict[str, Any] = msgspec.field(default_factory=dict)
    event: str = ""


class State(msgspec.Struct, kw_only=True):
    k: int
    status: str
    d: dict[str, Any]


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Msg)


def state_key(ns: str, saga_id: str) -> str:
    return f"{ns}:f:{saga_id}"


async def _declare(channel: aio_pika.abc.AbstractChannel, ns: str, queue: str, pattern: str) -> Any:
    exchange = "events" if queue == "coordinator.events" else "commands"
    q = await channel.declare_queue(
        f"{ns}.{queue}",
        durable=True,
        arguments=dict(queue_arguments(ns, queue, delivery_limit=DELIVERY_LIMIT)),
    )
    dead = await channel.declare_queue(
        f"{ns}.{queue}.dead", durable=True, arguments=dict(dead_queue_arguments())
    )
    await q.bind(f"{ns}.{exchange}", pattern)
    await dead.bind(f"{ns}.dead", queue)
    return q


async def _open(amqp: str, ns: str) -> tuple[Any, dict[str, Any]]:
    connection = await aio_pika.connect(amqp, client_properties={"connection_name": f"floor {ns}"})
    publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchanges = {
        name: await publisher.declare_exchange(f"{ns}.{name}", "topic", durable=True)
        for name in EXCHANGES
    }
    return connection, exchanges


def _message(body: bytes, message_id: str) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
    )


async def run_coordinator(amqp: str, redis_url: str, ns: str, retention: int) -> None:
    connection, ex = await _open(amqp, ns)
    redis = Redis.from_url(redis_url)
    cas = redis.register_script(CAS)
    commands, lifecycle = ex["commands"], ex["lifecycle"]
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=COORDINATOR_PREFETCH)
    await _declare(channel, ns, "bench.commands", "bench.*")  # as Coordinator.start does
    queue = await _declare(channel, ns, "coordinator.events", "#")

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        t_in = time.time()
        m = _dec.decode(message.body)
        lat = m.lat
        if m.k >= 0:
            lat.append(t_in - m.ti)
        k = m.k + 1
        done = k == STEPS
        state = _enc.encode(State(k=k, status="completed" if done else "running", d=m.d))
        ok = await cas(
            keys=[state_key(ns, m.id)],
            args=[m.v, m.v + 1, state, retention if done else 0],
        )
        if ok:
            if done:
                body = _enc.encode(Msg(id=m.id, lat=lat, event="completed"))
                await lifecycle.publish(
                    _message(body, f"{m.id}:completed"), "floor.completed", mandatory=False
                )
            else:
                body = _enc.encode(Msg(id=m.id, k=k, v=m.v + 1, ti=t_in, lat=lat, d=m.d))
                await commands.publish(
                    _message(body, f"{m.id}:{k}"), f"bench.Step{k}", mandatory=True
                )
        await message.ack()

    await queue.consume(handle)
    await _until_signalled()
    await connection.close()
    await redis.aclose()


async def run_responder(amqp: str, ns: str, protocol: str, hold_step: int | None) -> None:
    connection, ex = await _open(amqp, ns)
    events = ex["events"]
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=RESPONDER_PREFETCH)
    queue = await _declare(channel, ns, "bench.commands", "bench.*")
    hold = hold_step if hold_step is not None else -1

    async def floor_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        m = _dec.decode(message.body)
        if m.k != hold:
            body = _enc.encode(Msg(id=m.id, k=m.k, v=m.v, ti=m.ti, lat=m.lat, d=m.d))
            await events.publish(_message(body, f"{m.id}:{m.k}:reply"), "floor.reply")
        await message.ack()

    steps = "abc"

    async def saga_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        cmd: Command = DEFAULT_CODEC.decode_command(message.body)
        if steps.find(cmd.step) != hold:
            reply = TaskCompleted(
                message_id=f"{cmd.message_id}:reply",
                saga_id=cmd.saga_id,
                saga_name=cmd.saga_name,
                step=cmd.step,
                attempt=cmd.attempt,
                kind=cmd.kind,
                causation_id=cmd.message_id,
                sent_at=datetime.now(UTC),
            )
            await events.publish(
                _message(DEFAULT_CODEC.encode(reply), reply.message_id),
                f"{cmd.saga_name}.TaskCompleted",
            )
        await message.ack()

    await queue.consume(floor_reply if protocol == "floor" else saga_reply)
    await _until_signalled()
    await connection.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.sleep(0.2)  # let handlers in flight settle; unacked ones are redelivered


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("role", choices=["coordinator", "responder"])
    parser.add_argument("--ns", required=True)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--retention", type=int, default=600, help="TTL of a finished saga (s)")
    parser.add_argument("--protocol", choices=["floor", "saga"], default="floor")
    parser.add_argument("--hold-step", type=int, default=None)
    parser.add_argument(
        "--loop", choices=["auto", "uvloop", "asyncio"], default="auto", help="as SAGA_EVENT_LOOP"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.role == "coordinator":
            main = run_coordinator(args.amqp, args.redis, args.ns, args.retention)
        else:
            main = run_responder(args.amqp, args.ns, args.protocol, args.hold_step)
        run_loop(main, args.loop)


if __name__ == "__main__":
    main()
