"""Every mistake a user makes with the ``saga`` command line is answered in one
line on stderr (``error: ...``), with an exit code a script can act on (2 for
usage and settings, 1 for a refused operation, 3 for a server that cannot be
reached) and no traceback, unless ``--debug`` asks for it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aio_pika
import pytest
from servers import AMQP_URL, REDIS_URL, namespace

from coordinator.adapters.rabbitmq import RabbitTransport

BIN = Path(sys.executable).parent
CLOSED = "127.0.0.1:1"  # nothing listens on port 1


def saga(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
        "SAGA_NAMESPACE": namespace(),
        "SAGA_AMQP_URL": AMQP_URL,
        "SAGA_REDIS_URL": REDIS_URL,
        "SAGA_HTTP": "127.0.0.1:0",  # saga run binds its port first: never a taken one
        **env,
    }
    return subprocess.run(
        [str(BIN / "saga"), *args], env=environ, capture_output=True, text=True, timeout=60
    )


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == code, output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, output
    (line,) = lines
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, line
    return line


USAGE = [
    (["run", "--saga", "no_such_module:saga"], ["--saga", "cannot import 'no_such_module'"]),
    (["run", "--saga", "coordinator.examples.orders:no_such"], ["--saga", "has no 'no_such'"]),
    (["run", "--saga", "coordinator.examples.orders:Ledger"], ["--saga", "not a saga definition"]),
    (["run", "--saga", "coordinator.examples.orders"], ["--saga", "expected MODULE:ATTRIBUTE"]),
    (["run"], ["Missing option '--saga'"]),
    (["participant", "no_such_module:services"], ["SERVICES", "cannot import"]),
    (["participant", "coordinator.examples.orders:saga"], ["SERVICES", "not a Service"]),
    (["start", "order.place", "--data", "{not json"], ["--data is not valid JSON"]),
    (["start", "order.place", "--data", "[1]"], ["--data must be a JSON object"]),
    (["signal", "s1", "approval", "--data", "{x"], ["--data is not valid JSON"]),
    (["start", "order.place", "--saga", "nope:saga"], ["--saga", "cannot import"]),
    (["list", "--limit", "many"], ["--limit"]),
    (["no-such-command"], ["No such command"]),
    (["graph", "no_such_module:saga"], ["cannot import"]),
]


@pytest.mark.parametrize(("args", "words"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_a_usage_mistake_is_one_line_and_exit_code_2(args: list[str], words: list[str]) -> None:
    one_line(saga(*args), 2, *words)


SETTINGS = [
    ("SAGA_REDIS_URL", "redis://:6379x", "the port must be a number"),
    ("SAGA_REDIS_URL", "htp://", "the scheme must be"),
    ("SAGA_AMQP_URL", "htp://", "the scheme must be amqp://"),
    ("SAGA_AMQP_URL", "amqp://guest:guest@127.0.0.1:56x/", "the port must be a number"),
    ("SAGA_HEARTBEAT", "often", "timedelta"),
    ("SAGA_HEARTBEAT", "0", "at least 1 second"),
    ("SAGA_WAIT_FOR_SERVERS", "a while", "timedelta"),
    ("SAGA_PREFETCH", "lots", "integer"),
    ("SAGA_EVENT_LOOP", "trio", "uvloop"),
]


@pytest.mark.parametrize(("name", "value", "words"), SETTINGS)
@pytest.mark.parametrize("command", ["list", "run --saga coordinator.examples.orders:saga"])
def test_a_bad_setting_names_the_variable(command: str, name: str, value: str, words: str) -> None:
    line = one_line(saga(*command.split(), **{name: value}), 2, f"{name}=", words)
    assert "fix the value or unset it" in line


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["show", "s1"],
        ["history", "s1"],
        ["signal", "s1", "approval"],
        ["cancel", "s1"],
        ["start", "order.place"],
    ],
)
def test_redis_unreachable_is_one_line_with_the_url_and_exit_code_3(args: list[str]) -> None:
    one_line(
        saga(*args, SAGA_REDIS_URL=f"redis://:secret@{CLOSED}/0"),
        3,
        f"cannot reach Redis at redis://:***@{CLOSED}/0 (connection refused)",
        "set SAGA_REDIS_URL",
    )


def test_rabbitmq_unreachable_for_a_start_is_one_line_without_the_password() -> None:
    line = one_line(
        saga("start", "order.place", SAGA_AMQP_URL=f"amqp://guest:guest@{CLOSED}/"),
        3,
        f"cannot reach RabbitMQ at amqp://guest:***@{CLOSED}/ (connection refused)",
    )
    assert "guest:guest" not in line


@pytest.mark.parametrize(
    "command", ["run --saga coordinator.examples.orders:saga", "participant x"]
)
def test_serving_with_wait_for_servers_0_fails_fast_in_one_line(command: str) -> None:
    if command.startswith("participant"):
        command = "participant coordinator.examples.orders.worker:services"
    done = saga(
        *command.split(), "--wait-for-servers", "0", SAGA_AMQP_URL=f"amqp://guest:guest@{CLOSED}/"
    )
    one_line(
        done,
        3,
        f"error: cannot reach RabbitMQ at amqp://guest:***@{CLOSED}/ (connection refused); "
        "start it or set SAGA_AMQP_URL",
    )
    done = saga(*command.split(), SAGA_WAIT_FOR_SERVERS="0", SAGA_REDIS_URL=f"redis://{CLOSED}/0")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot reach Redis at redis://{CLOSED}/0 (connection refused); "
        "start it or set SAGA_REDIS_URL"
    )
    assert "Traceback" not in done.stderr


def test_a_wrong_password_is_one_line_and_not_waited_for() -> None:
    done = saga(
        "run",
        "--saga",
        "coordinator.examples.orders:saga",
        SAGA_AMQP_URL=AMQP_URL.replace("guest:guest", "guest:wrong"),
    )
    one_line(done, 1, "refused the connection", "check the credentials in SAGA_AMQP_URL")


def test_unknown_ids_are_refused_in_one_line_with_exit_code_1() -> None:
    for args in (
        ["show", "nope"],
        ["history", "nope"],
        ["signal", "nope", "a"],
        ["cancel", "nope"],
    ):
        one_line(saga(*args), 1, "no saga with id nope in namespace")


def test_input_checked_against_the_definition_names_the_field() -> None:
    done = saga(
        "start",
        "order.place",
        "--saga",
        "coordinator.examples.orders:saga",
        "--data",
        '{"order_id": 3}',
    )
    one_line(done, 1, "does not fit saga 'order.place'", "$.order_id")


def test_a_start_nothing_receives_says_so() -> None:
    done = saga("start", "order.place", "--data", "{}")
    one_line(done, 1, "nothing receives the start", "no coordinator ever ran in namespace")


async def test_a_start_no_coordinator_takes_says_so_and_stays_queued() -> None:
    ns = namespace()
    transport = await RabbitTransport.connect(AMQP_URL, namespace=ns)
    try:
        # The queue a coordinator declares, with no coordinator consuming it.
        await transport.declare("coordinator.events", "events", "#")
        done = await asyncio.to_thread(
            saga, "start", "order.place", "--accept-timeout", "0.5", SAGA_NAMESPACE=ns
        )
        one_line(
            done, 1, "no coordinator took the start within 0.5 s", f"namespace {ns!r}", "queued"
        )
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{ns}.coordinator.events", passive=True)
            assert queue.declaration_result.message_count == 1, "the start stays queued"
    finally:
        await transport.delete_namespace(queues=["coordinator.events"])
        await transport.close()


def test_debug_shows_the_traceback() -> None:
    done = saga("--debug", "show", "nope")
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "RefusedError" in done.stderr
