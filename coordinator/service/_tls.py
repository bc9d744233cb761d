"""TLS to RabbitMQ and Redis: the one context every process that connects uses.

``amqps://`` and ``rediss://`` URLs get an ``ssl.SSLContext`` built here (the
CA, an optional client certificate and key, the hostname checked) and handed
to aio-pika and redis-py as it is. Left to themselves, each library builds its
own from options in the URL, and aio-pika's own TLS example turns verification
off; one builder means the coordinator, the participants, the client, the API
and the CLI verify alike.

A URL that turns verification off (``no_verify_ssl=1``, ``ssl_cert_reqs=none``,
``ssl_check_hostname=false``) stops the process at start, in one line, unless
``SAGA_TLS_INSECURE=1`` says it is meant. A TLS handshake that fails for a
reason waiting will not fix (a wrong CA, a name the certificate does not list,
plaintext against a TLS port or the reverse) is reported in one line naming the
setting to change, instead of being retried as if the server were down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from coordinator._errors import SettingsError
from coordinator.adapters.redis import connect_redis
from coordinator.service._settings import Settings

__all__ = ["diagnose_tls", "redis_client", "tls_context"]

_log = logging.getLogger("coordinator")

Server = Literal["amqp", "redis"]

# The URL options by which aio-pika (``no_verify_ssl``) and redis-py
# (``ssl_cert_reqs``, ``ssl_check_hostname``) turn verification off.
_OFF: Mapping[str, frozenset[str]] = {
    "no_verify_ssl": frozenset({"1", "true", "yes", "on"}),
    "ssl_cert_reqs": frozenset({"none", "optional", "cert_none", "cert_optional"}),
    "ssl_check_hostname": frozenset({"0", "false", "no", "n", "f", "off"}),
}

# The URL options each library reads files from, as a fallback for the settings.
_URL_FILES: Mapping[Server, tuple[str, str, str]] = {
    "amqp": ("cafile", "certfile", "keyfile"),
    "redis": ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"),
}

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the
# certificate is fine, the name connected to is not one it lists.
_NAME_MISMATCH = frozenset({62, 64})

# What a server speaking the plain protocol answers first: RabbitMQ a
# Connection.Start frame (type 1) to the protocol header, Redis a reply to PING.
_PLAIN_HELLO: Mapping[Server, tuple[bytes, tuple[bytes, ...]]] = {
    "amqp": (b"AMQP\x00\x00\x09\x01", (b"\x01", b"AMQP")),
    "redis": (b"PING\r\n", (b"+", b"-")),
}


def _url(settings: Settings, server: Server) -> str:
    return settings.amqp_url if server == "amqp" else settings.redis_url


def _setting(server: Server, part: str = "URL") -> str:
    return f"SAGA_{server.upper()}_{part}"


def uses_tls(url: str) -> bool:
    """Whether ``url`` asks for TLS (``amqps://``, ``rediss://``)."""
    return urlsplit(url).scheme in ("amqps", "rediss")


def verification_off(url: str) -> list[str]:
    """The options of ``url`` that turn certificate or hostname checks off."""
    return [
        f"{key}={value}"
        for key, value in parse_qsl(urlsplit(url).query)
        if value.strip().lower() in _OFF.get(key.lower(), ())
    ]


def _files(settings: Settings, server: Server) -> tuple[Path | None, Path | None, Path | None]:
    """CA, certificate, key: the server's own setting, else the URL's option,
    else the shared setting."""
    query = dict(parse_qsl(urlsplit(_url(settings, server)).query))
    found: list[Path | None] = []
    for part, option in zip(("ca", "cert", "key"), _URL_FILES[server], strict=True):
        own = getattr(settings, f"{server}_tls_{part}_file")
        shared = getattr(settings, f"tls_{part}_file")
        found.append(own or (Path(query[option]) if option in query else None) or shared)
    return found[0], found[1], found[2]


def tls_context(settings: Settings, server: Server) -> ssl.SSLContext | None:
    """The context for ``server``'s URL in ``settings``; None for a plaintext URL.

    Raises:
        SettingsError: The URL turns verification off without
            ``SAGA_TLS_INSECURE=1``, or a certificate or key cannot be loaded.
    """
    url = _url(settings, server)
    if not uses_tls(url):
        return None
    off = verification_off(url)
    if off and not settings.tls_insecure:
        raise SettingsError(
            f"{_setting(server)} turns TLS verification off ({', '.join(off)}), so anyone"
            " on the network path could read and change the traffic; remove it and set"
            " SAGA_TLS_CA_FILE to the CA that signed the server's certificate"
            " (or set SAGA_TLS_INSECURE=1 for a test setup)"
        )
    ca, cert, key = _files(settings, server)
    try:
        context = ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"{_setting(server, 'TLS_CA_FILE')} or SAGA_TLS_CA_FILE={ca}: not a PEM CA"
            f" certificate ({exc}); give the CA that signed the server's certificate"
        ) from None
    if key is not None and cert is None:
        raise SettingsError(
            f"a TLS key ({key}) without a certificate: set SAGA_TLS_CERT_FILE"
            f" (or {_setting(server, 'TLS_CERT_FILE')}) too"
        )
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(
                f"the client certificate {cert} (key {key or 'in the same file'}) cannot be"
                f" loaded ({exc}); give a PEM certificate and the key that matches it in"
                f" SAGA_TLS_CERT_FILE and SAGA_TLS_KEY_FILE"
            ) from None
    if off:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _log.warning(
            "TLS to %s is not verified (%s, allowed by SAGA_TLS_INSECURE=1)",
            server,
            ", ".join(off),
        )
    return context


def redis_client(settings: Settings) -> Any:
    """A Redis client for ``settings.redis_url``, over TLS as the settings say."""
    return connect_redis(settings.redis_url, tls_context(settings, "redis"))


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:  # a chain may loop
        if isinstance(seen, ssl.SSLError):
            return seen
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return None


async def speaks_plain(server: Server, host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` answers the plain protocol's first words.

    Asked after a TLS handshake got no answer: a plaintext Redis reads a
    ClientHello as the start of a command and waits for the rest.
    """
    hello, answers = _PLAIN_HELLO[server]
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(hello)
                first = await reader.read(4)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return first.startswith(answers)


async def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` answers a TLS handshake.

    Asked only after a plaintext connection failed, to tell why: nothing is
    sent over it, so not verifying this one handshake exposes nothing.
    """
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=probe)
    except ssl.SSLError as exc:
        # A server that wants a client certificate still speaks TLS.
        return "ALERT" in (exc.reason or "")
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


async def tls_refusal(
    host: str, port: int, context: ssl.SSLContext, timeout: float = 3.0
) -> ssl.SSLError | None:
    """The TLS error ``host:port`` answers a handshake made with ``context``, if any.

    With TLS 1.3 a server refuses a client's certificate (or its absence) only
    after the client's side of the handshake is done. A client that has written
    its first bytes by then may see the connection reset instead of the alert
    (the server closed with those bytes unread). This probe writes nothing, so
    the alert arrives as itself; a server that accepts the handshake keeps
    silent until ``timeout``.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                await reader.read(1)
            finally:
                writer.close()
    except ssl.SSLError as exc:
        return exc
    except (OSError, TimeoutError):
        return None
    return None


async def _protocol_mismatch(key: Server, url: str, where: str, ca: str) -> str | None:
    """One side speaks TLS and the other does not: which setting to fix, if so."""
    setting, parts = _setting(key), urlsplit(url)
    plain, secure = ("amqp://", "amqps://") if key == "amqp" else ("redis://", "rediss://")
    if parts.hostname is None or parts.port is None:
        return None
    if uses_tls(url):
        if not await speaks_plain(key, parts.hostname, parts.port):
            return None
        return (
            f"{where} does not speak TLS on this port; write {plain} in {setting},"
            " or the port of its TLS listener"
        )
    if not await speaks_tls(parts.hostname, parts.port):
        return None
    return (
        f"{where} speaks TLS and {setting} is plaintext; write {secure} in {setting}"
        f" and set {ca} to the CA that signed the server's certificate"
    )


async def diagnose_tls(
    server: str, url: str, exc: BaseException, context: ssl.SSLContext | None = None
) -> str | None:
    """One line saying which TLS setting to fix, when ``exc`` is a TLS problem.

    Args:
        server: ``RabbitMQ`` or ``Redis``, for the message.
        url: The URL connected to (shown without its password by the caller).
        exc: Why the connection failed.
        context: The TLS context the connection used: when ``exc`` is no TLS error
            (a reset, say), a handshake made with it alone tells whether the server
            refuses it.
    """
    key: Server = "amqp" if urlsplit(url).scheme.startswith("amqp") else "redis"
    setting, ca = _setting(key), f"SAGA_TLS_CA_FILE (or {_setting(key, 'TLS_CA_FILE')})"
    parts = urlsplit(url)
    where = f"{server} at {parts.hostname}:{parts.port}"
    plain = "amqp://" if key == "amqp" else "redis://"
    error = _ssl_error(exc)
    if error is None and context is not None and parts.hostname and parts.port:
        error = await tls_refusal(parts.hostname, parts.port, context)
    if error is None:
        return await _protocol_mismatch(key, url, where, ca)
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code in _NAME_MISMATCH:
            return (
                f"{where}: its certificate is not valid for {parts.hostname!r}"
                f" ({error.verify_message}); connect by a name the certificate lists"
                f" (its subjectAltName) in {setting}"
            )
        return (
            f"{where}: its certificate is not signed by a CA we trust"
            f" ({error.verify_message}); set {ca} to the CA that signed it"
        )
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return None  # the server hung up mid-handshake: restarting, maybe; worth waiting
    why = (error.reason or str(error)).upper()
    if any(k in why for k in ("WRONG_VERSION", "RECORD_LAYER", "PACKET_LENGTH", "HTTP_REQUEST")):
        return (
            f"{where} does not speak TLS on this port; write {plain} in {setting},"
            " or the port of its TLS listener"
        )
    if "CERTIFICATE_REQUIRED" in why or "HANDSHAKE_FAILURE" in why:
        return (
            f"{where} wants a client certificate ({error.reason}); set SAGA_TLS_CERT_FILE"
            f" and SAGA_TLS_KEY_FILE (or {_setting(key, 'TLS_CERT_FILE')} and"
            f" {_setting(key, 'TLS_KEY_FILE')})"
        )
    if "UNKNOWN_CA" in why or "BAD_CERTIFICATE" in why:
        return (
            f"{where} refused our client certificate ({error.reason}); give one signed by"
            f" a CA the server trusts in SAGA_TLS_CERT_FILE and SAGA_TLS_KEY_FILE"
        )
    return f"{where}: the TLS handshake failed ({error.reason or error}); check {ca} and {setting}"
