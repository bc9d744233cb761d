"""Who asks, and what they may do: bearer tokens with roles, for the REST API and the
dashboard.

Tokens come from ``SAGA_API_TOKENS``, a JSON list of ``{"name", "role", "sha256"}``:
only the SHA-256 of each token is configured, never the token (``saga token`` makes
one). A request's token is hashed and compared with every entry in constant time
(``hmac.compare_digest``), so neither a match nor its position leaks through
timing. A failed attempt is logged with the client's address, never the token.

Roles rank ``viewer`` < ``operator`` < ``admin``: a viewer reads, an operator also
acts on sagas and dead letters, an admin also purges and overrides breakers.

With no token configured at all, the server is for the machine it runs on: it
binds to loopback only (``check_exposure``) and every request is
``Principal("local", "admin")``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Iterable
from typing import Any, Literal, final

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.types import Guard

from coordinator.service._http import HttpAddressError

__all__ = [
    "LOCAL",
    "ROLE_RANK",
    "ExposedWithoutTokensError",
    "Principal",
    "Role",
    "TokenEntry",
    "Tokens",
    "auth_middleware",
    "check_exposure",
    "new_token",
    "requires",
    "session_config",
]

_log = logging.getLogger("coordinator.auth")

Role = Literal["viewer", "operator", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


class Principal(msgspec.Struct, frozen=True):
    """Who a request acts for: the token's name (written as ``by`` in histories) and role;
    ``payloads``: it may read sensitive saga data in clear (each read is audited)."""

    name: str
    role: Role
    payloads: bool = False


LOCAL = Principal("local", "admin", payloads=True)
"""Every request's principal when no token is configured (loopback only): whoever is on
the machine reads Redis anyway."""


class TokenEntry(msgspec.Struct, frozen=True):
    """One entry of ``SAGA_API_TOKENS``: a name, a role and the token's SHA-256 (hex);
    ``payloads: true`` lets it read sensitive saga data in clear (any role)."""

    name: str
    role: Role
    sha256: str
    payloads: bool = False


class ExposedWithoutTokensError(HttpAddressError):
    """An HTTP address other than loopback was asked for with no API token configured."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@final
class Tokens:
    """The configured tokens, checked in constant time.

    Args:
        entries: The entries of ``SAGA_API_TOKENS``.
    """

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._entries = [
            (bytes.fromhex(e.sha256), Principal(e.name, e.role, e.payloads)) for e in entries
        ]

    @classmethod
    def from_settings(cls, settings: Any) -> Tokens:
        """The tokens of ``Settings.api_tokens`` (plain dicts, as pydantic read them)."""
        return cls(msgspec.convert(list(settings.api_tokens), list[TokenEntry]))

    @property
    def empty(self) -> bool:
        """No token configured: loopback only, every request is the local admin."""
        return not self._entries

    def check(self, token: str) -> Principal | None:
        """The principal of ``token``, or None if it matches no entry."""
        digest = _digest(token)
        found: Principal | None = None
        # Every entry is compared, a match or not: the time taken does not say which.
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found


def new_token(name: str, role: Role) -> tuple[str, TokenEntry]:
    """A fresh random token and its entry for ``SAGA_API_TOKENS`` (the hash only)."""
    token = secrets.token_urlsafe(32)
    return token, TokenEntry(name=name, role=role, sha256=_digest(token).hex())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tokens: Tokens) -> str:
    """What the start log line says about access on ``host``.

    Raises:
        ExposedWithoutTokensError: ``host`` is not loopback and no token is configured.
    """
    if not tokens.empty:
        return "API tokens required"
    if not _is_loopback(host):
        raise ExposedWithoutTokensError(
            f"refusing to serve the API on {host} without tokens: set SAGA_API_TOKENS "
            "(`saga token --name NAME --role ROLE` makes one) or bind to 127.0.0.1"
        )
    return "no API token configured: loopback only, every request acts as local admin"


@final
class _AuthMiddleware(AbstractAuthenticationMiddleware):
    """Sets ``request.user`` to a `Principal` or None; the guards answer 401 or 403."""

    def __init__(self, app: Any, tokens: Tokens, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._tokens = tokens

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
        if self._tokens.empty:
            return AuthenticationResult(user=LOCAL, auth=None)
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() == "bearer" and token.strip():
            principal = self._tokens.check(token.strip())
            if principal is None:
                client = connection.client.host if connection.client else "?"
                _log.warning("refused an API token from %s on %s", client, connection.url.path)
            return AuthenticationResult(user=principal, auth=None)
        session = connection.scope.get("session") or {}
        stored = session.get("principal") if isinstance(session, dict) else None
        if isinstance(stored, dict):
            try:
                return AuthenticationResult(user=msgspec.convert(stored, Principal), auth=None)
            except msgspec.ValidationError:
                pass
        return AuthenticationResult(user=None, auth=None)


def auth_middleware(tokens: Tokens) -> DefineMiddleware:
    """The middleware that sets ``request.user``: from ``Authorization: Bearer <token>``,
    else from the session's ``principal`` (``{"name", "role"}``, set by the dashboard's
    login), else None; `LOCAL` for every request when no token is configured.

    Put it after the session middleware (``session_config(...).middleware``).
    """
    return DefineMiddleware(_AuthMiddleware, tokens=tokens)


def requires(role: Role) -> Guard:
    """A guard: 401 without a principal, 403 when its role ranks below ``role``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            raise NotAuthorizedException("a valid bearer token is required")
        if ROLE_RANK[principal.role] < ROLE_RANK[role]:
            raise PermissionDeniedException(
                f"{principal.name} is {principal.role}: this needs {role}"
            )

    return guard


def session_config(settings: Any) -> CookieBackendConfig:
    """The dashboard's session cookie ``saga_session``: HttpOnly, SameSite=Lax, encrypted
    with ``SAGA_SESSION_SECRET`` (any text; hashed to a key) or, without it, a key
    random per process (sessions end when the process does)."""
    secret = getattr(settings, "session_secret", None)
    key = hashlib.sha256(secret.encode()).digest() if secret else os.urandom(32)
    return CookieBackendConfig(secret=key, key="saga_session", httponly=True, samesite="lax")
