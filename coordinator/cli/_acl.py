"""``saga acl``: the Redis ACL users of a namespace, as a ``users.acl`` file."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from coordinator.adapters.redis import acl_users
from coordinator.adapters.redis._acl import ACL_ROLES
from coordinator.cli._options import NamespaceOpt, settings

__all__ = ["commands"]

commands = typer.Typer()


@commands.command()
def acl(
    export: Annotated[
        bool, typer.Option("--export", help="Print the users.acl file (redis-server --aclfile).")
    ] = True,
    namespace: NamespaceOpt = None,
) -> None:
    """Print the Redis ACL users of the namespace: default off, coordinator, participant, reader.

    Each user's password is taken from SAGA_ACL_<ROLE>_PASSWORD (e.g.
    SAGA_ACL_COORDINATOR_PASSWORD) and written as its SHA-256; a user without
    one cannot log in until given one (ACL SETUSER NAME >SECRET).
    """
    found = settings(namespace)
    passwords: dict[str, str] = {
        role: os.environ[f"SAGA_ACL_{role.upper()}_PASSWORD"]
        for role in ACL_ROLES
        if os.environ.get(f"SAGA_ACL_{role.upper()}_PASSWORD")
    }
    typer.echo(acl_users(found.namespace, passwords), nl=False)
