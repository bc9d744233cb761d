"""``--http`` and ``SAGA_HTTP`` on the command line: one-line errors, at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Nothing listens there: a process that got past its HTTP port would wait for RabbitMQ.
CLOSED = "amqp://guest:guest@127.0.0.1:9/"


def saga(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
        "SAGA_AMQP_URL": CLOSED,
        "SAGA_WAIT_FOR_SERVERS": "forever",
        **env,
    }
    return subprocess.run(
        [str(BIN / "saga"), *args], env=environ, capture_output=True, text=True, timeout=60
    )


RUN = ("run", "--saga", "coordinator.examples.orders:saga")
PARTICIPANT = ("participant", "coordinator.examples.orders.worker:services")


@pytest.mark.parametrize("command", [RUN, PARTICIPANT], ids=["run", "participant"])
@pytest.mark.parametrize("how", ["option", "env"])
def test_a_port_in_use_is_one_line_and_exit_code_2(command: tuple[str, ...], how: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        if how == "option":
            done = saga(*command, "--http", address)
        else:
            done = saga(*command, SAGA_HTTP=address)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: cannot serve HTTP on {address}: the port is in use; choose another with "
        "--http HOST:PORT or SAGA_HTTP (off: no HTTP server)\n"
    )


def test_a_malformed_address_is_a_usage_error() -> None:
    done = saga(*RUN, "--http", "localhost")
    assert done.returncode == 2
    assert "Invalid value for '--http': expected HOST:PORT" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    done = saga(*PARTICIPANT, SAGA_HTTP="9464")
    assert done.returncode == 2
    assert done.stderr.startswith("error: SAGA_HTTP='9464': expected HOST:PORT")
    assert len(done.stderr.splitlines()) == 1
