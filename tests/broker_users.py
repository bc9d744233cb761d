"""Throwaway RabbitMQ users on the test broker, so that it validates ``user_id``.

Each is created with ``rabbitmqctl`` under a unique name, given full permissions on
the default vhost (the sender check is the coordinator's, not the broker's), and
deleted on exit. Topic permissions per user are the deployment's business.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager

from servers import AMQP_URL, require_program
from yarl import URL


async def _ctl(*args: str) -> None:
    program = require_program("rabbitmqctl")
    process = await asyncio.create_subprocess_exec(
        program, "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {(err or out).decode().strip()}")


@asynccontextmanager
async def broker_user(name: str) -> AsyncIterator[str]:
    """A RabbitMQ user ``name`` (make it unique, e.g. with the test's namespace) for
    the test broker; yields the AMQP URL logging in as it."""
    password = uuid.uuid4().hex
    await _ctl("add_user", name, password)
    try:
        await _ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        yield str(URL(AMQP_URL).with_user(name).with_password(password))
    finally:
        await _ctl("delete_user", name)


@contextmanager
def broker_users(names: Iterable[str]) -> Iterator[dict[str, str]]:
    """Several users at once (``rabbitmqctl`` takes seconds a call): name -> AMQP URL.

    For a module's tests to share; run in parallel, deleted on exit.
    """
    program = require_program("rabbitmqctl")
    passwords = {name: uuid.uuid4().hex for name in names}

    def run_all(*calls: list[str], check: bool = True) -> None:
        running = [
            subprocess.Popen([program, "-q", *c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for c in calls
        ]
        for call, process in zip(calls, running, strict=True):
            out, _ = process.communicate()
            if check and process.returncode != 0:
                raise RuntimeError(f"rabbitmqctl {' '.join(call)}: {out.decode().strip()}")

    try:
        run_all(*(["add_user", n, p] for n, p in passwords.items()))
        run_all(*(["set_permissions", "-p", "/", n, ".*", ".*", ".*"] for n in passwords))
        base = URL(AMQP_URL)
        yield {n: str(base.with_user(n).with_password(p)) for n, p in passwords.items()}
    finally:
        run_all(*(["delete_user", n] for n in passwords), check=False)
