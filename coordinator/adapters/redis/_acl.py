"""The Redis ACL users of a namespace: what each process may run, on which keys.

The command lists were read off the real code: each role run against a Redis
of its own (the order example's sagas completed, compensated, retried and
approved; every API read; ``saga show``), then ``INFO commandstats``, which
counts the commands run inside scripts too. Scripts run with the caller's ACL,
so ``EVALSHA`` grants nothing more than the commands listed. Commands on paths
that run seldom (the metrics' ``HLEN``, the breakers' lease) were added from the
code. ``tests/e2e/test_tls.py`` runs the roles under these users.

Keys (for namespace ``ns``)::

    ns:{ns.b<N>}:...        sagas: states, histories, indexes, timers, outbox
    ns:{ns.breakers}:...    circuit breakers and their leases
    ns:deployment:...       what the coordinators run, for the operators' commands
    ns:refused:<saga>       why a start was refused, for the client
    ns:reply:{...}, ns:claim:{...}, ns:tomb:{...}, ns:command:{...}
                            the participants' replies, holds, tombstones, and
                            the failures recorded for one command

The participants' keys are named by the command's idempotency key, which does
not name the service, so every participant service shares one user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

__all__ = ["ACL_ROLES", "AclRole", "acl_user", "acl_users"]

AclRole = Literal["coordinator", "participant", "reader"]
ACL_ROLES: tuple[AclRole, ...] = ("coordinator", "participant", "reader")

# Every client says HELLO on connect and pings. (redis-py also sends CLIENT
# SETINFO and ignores its refusal: Redis 7.0 has no such command, and an ACL
# file naming it would not load there.)
_CONNECT = ("hello", "ping")

_COMMANDS: Mapping[AclRole, tuple[str, ...]] = {
    "coordinator": (
        *_CONNECT,
        "time", "scan", "evalsha", "script|load",
        "exists", "get", "set", "del", "expire", "pexpire",
        "hget", "hmget", "hgetall", "hset", "hdel", "hlen",
        "lpush", "rpush", "ltrim", "lrange",
        "sadd", "smembers",
        "zadd", "zrem", "zcard", "zrange", "zrangebyscore", "zrevrange",
        "zrevrangebyscore", "zremrangebyscore",
    ),
    "participant": (*_CONNECT, "evalsha", "script|load", "exists", "get", "set", "del", "pexpire"),
    "reader": (
        *_CONNECT,
        "time", "scan", "exists", "get",
        "hget", "hmget", "hgetall", "hlen", "lrange", "smembers",
        "zcard", "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore",
    ),
}  # fmt: skip


def _glob(text: str) -> str:
    """``text`` with Redis's glob characters escaped (a namespace may hold them)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _keys(namespace: str, role: AclRole) -> list[str]:
    ns = _glob(namespace)
    if role == "participant":
        return [f"~{ns}:reply:*", f"~{ns}:claim:*", f"~{ns}:tomb:*", f"~{ns}:command:*"]
    # ns:{ns.b0}... and ns:{ns.breakers}...: one pattern for both hash-tagged families.
    saga_keys = [f"{ns}:{{{ns}.*", f"{ns}:deployment:*", f"{ns}:refused:*"]
    # %R~: reads only; EVALSHA counts every key as written, so a reader runs none.
    access = "~" if role == "coordinator" else "%R~"
    return [access + pattern for pattern in saga_keys]


def acl_user(namespace: str, role: AclRole, password: str | None = None) -> str:
    """The ``users.acl`` line of ``role`` in ``namespace``; named ``{namespace}.{role}``.

    The password is written as its SHA-256 (``#...``), so the file does not hold
    it; without one the user cannot log in until given one (``ACL SETUSER
    name >secret``).
    """
    secret = f"#{hashlib.sha256(password.encode()).hexdigest()}" if password else "resetpass"
    commands = " ".join("+" + command for command in _COMMANDS[role])
    keys = " ".join(_keys(namespace, role))
    return f"user {namespace}.{role} on {secret} resetkeys {keys} resetchannels -@all {commands}"


def acl_users(namespace: str, passwords: Mapping[str, str] | None = None) -> str:
    """A ``users.acl`` for ``namespace``: ``default`` off, then one user per role."""
    passwords = passwords or {}
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    lines += [acl_user(namespace, role, passwords.get(role)) for role in ACL_ROLES]
    return "\n".join(lines) + "\n"
