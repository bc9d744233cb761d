"""Bytes <-> messages, with every failure mapped to a `ContractError`."""

from __future__ import annotations

import typing
from typing import Any, Final, Generic, TypeVar, final

import msgspec

from contracts._errors import ContractError
from contracts._messages import Command, CoordinatorInbound, SagaLifecycle, WireMessage

T = TypeVar("T")

# msgspec echoes the offending value in some errors; a bound keeps a hostile
# tag from bloating the dead-letter headers the message ends up in.
_MAX_ECHO: Final = 64


class _TagProbe(msgspec.Struct):
    # Reads only the ``type`` tag (every other field is skipped) so a validation
    # error can be classified without parsing msgspec's error text.
    tag: Any = msgspec.field(default=None, name="type")


_PROBE: Final = msgspec.json.Decoder(_TagProbe)
# Decoding to Raw checks the whole document's syntax without building objects.
_SYNTAX: Final = msgspec.json.Decoder(msgspec.Raw)


def _tags_of(type_: object) -> tuple[str, ...]:
    """The ``type`` tags a decoder for ``type_`` accepts (empty if it is not tagged)."""
    members = typing.get_args(type_) if typing.get_origin(type_) is not None else (type_,)
    tags: list[str] = []
    for member in members:
        config = getattr(member, "__struct_config__", None)
        if config is not None and isinstance(config.tag, str):
            tags.append(config.tag)
    return tuple(tags)


def _readable(error: Exception) -> str:
    text = str(error)
    # msgspec capitalises its messages ("Expected `int`..."); ours read as
    # clauses, but acronyms ("JSON is malformed") keep their case.
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


def _too_large(size: int, limit: int) -> ContractError:
    return ContractError(f"message is {size} bytes; the limit is {limit}", reason="too_large")


@final
class _Target(Generic[T]):
    """A cached decoder plus the tags it accepts, used to classify its errors."""

    __slots__ = ("decoder", "tags")

    def __init__(self, type_: Any) -> None:
        self.decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)
        self.tags = _tags_of(type_)

    def decode(self, data: bytes) -> T:
        try:
            return self.decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise self._classify(data, exc) from exc
        except msgspec.DecodeError as exc:
            raise ContractError(_readable(exc), reason="malformed_json") from exc

    def _classify(self, data: bytes, exc: msgspec.ValidationError) -> ContractError:
        # msgspec validates while it parses and stops at the first wrong value, so
        # a document broken further on still surfaces as a ValidationError: check
        # the whole syntax first, then look at the tag.
        try:
            _SYNTAX.decode(data)
        except msgspec.DecodeError as malformed:
            return ContractError(_readable(malformed), reason="malformed_json")
        try:
            tag = _PROBE.decode(data).tag
        except msgspec.ValidationError:
            tag = None  # not a JSON object: msgspec's own message says so
        if self.tags and isinstance(tag, str) and tag not in self.tags:
            shown = tag if len(tag) <= _MAX_ECHO else tag[:_MAX_ECHO] + "..."
            return ContractError(
                f"message type {shown!r} is not one of {', '.join(self.tags)}",
                reason="unknown_type",
            )
        return ContractError(_readable(exc), reason="schema_mismatch")


@final
class Codec:
    """Encodes and decodes wire messages as JSON, within a size limit.

    Build one and reuse it: the msgspec encoder and the decoders (one per target
    type) are created once and cached. A codec is safe to share between tasks
    and threads.

    Example:
        codec = Codec()
        body = codec.encode(command)  # publish it
        message = codec.decode_inbound(delivery.body)  # TaskCompleted | TaskFailed | ...
    """

    __slots__ = ("_command", "_decoders", "_encoder", "_inbound", "_lifecycle", "_max_size")

    def __init__(self, max_size: int = 64 * 1024) -> None:
        """Create a codec.

        Args:
            max_size: The largest encoded message accepted, in bytes, on both
                encode and decode. It bounds the memory an untrusted sender can
                make a consumer spend; keep it below the broker's own limit.

        Raises:
            ValueError: If ``max_size`` is not positive.
        """
        if max_size <= 0:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self._max_size = max_size
        self._encoder = msgspec.json.Encoder()
        self._inbound: _Target[CoordinatorInbound] = _Target(CoordinatorInbound)
        self._command: _Target[Command] = _Target(Command)
        self._lifecycle: _Target[SagaLifecycle] = _Target(SagaLifecycle)
        self._decoders: dict[object, _Target[Any]] = {}

    @property
    def max_size(self) -> int:
        """The size limit in bytes."""
        return self._max_size

    def encode(self, msg: WireMessage) -> bytes:
        """Encode a message as JSON.

        Args:
            msg: The message; its ``type`` tag is written first.

        Returns:
            The UTF-8 JSON bytes.

        Raises:
            ContractError: ``too_large`` if the result exceeds ``max_size``;
                ``schema_mismatch`` if a payload holds a value JSON cannot carry.
        """
        try:
            data = self._encoder.encode(msg)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ContractError(
                f"cannot encode {type(msg).__name__}: {_readable(exc)}", reason="schema_mismatch"
            ) from exc
        if len(data) > self._max_size:
            raise _too_large(len(data), self._max_size)
        return data

    def decode_inbound(self, data: bytes) -> CoordinatorInbound:
        """Decode a message from the coordinator's queue.

        Args:
            data: The message body.

        Returns:
            A `TaskCompleted`, `TaskFailed`, `StartSaga`, `Signal`, `CancelSaga`,
            `RetrySaga`, `PauseSaga` or `ResumeSaga`.

        Raises:
            ContractError: If the body is too large, not JSON, of another type, or
                does not match the type's schema.
        """
        self._check_size(data)
        return self._inbound.decode(data)

    def decode_command(self, data: bytes) -> Command:
        """Decode a command, on the participant's side.

        Args:
            data: The message body.

        Returns:
            The command.

        Raises:
            ContractError: If the body is too large, not JSON, not a command, or
                does not match the command's schema.
        """
        self._check_size(data)
        return self._command.decode(data)

    def decode_lifecycle(self, data: bytes) -> SagaLifecycle:
        """Decode a lifecycle announcement, on a listener's side.

        Args:
            data: The message body.

        Returns:
            The announcement.

        Raises:
            ContractError: If the body is too large, not JSON, not a lifecycle
                announcement, or does not match its schema.
        """
        self._check_size(data)
        return self._lifecycle.decode(data)

    def decode(self, data: bytes, type_: type[T]) -> T:
        """Decode a body as ``type_``, any type msgspec supports.

        Args:
            data: The message body.
            type_: The expected type; its decoder is built on first use and cached.

        Returns:
            The decoded value.

        Raises:
            ContractError: If the body is too large, not JSON, carries another
                ``type`` tag, or does not match ``type_``.
        """
        self._check_size(data)
        target = self._decoders.get(type_)
        if target is None:
            # setdefault keeps one decoder per type if two threads race here.
            target = self._decoders.setdefault(type_, _Target(type_))
        decoded: T = target.decode(data)
        return decoded

    def _check_size(self, data: bytes) -> None:
        # Before parsing: the limit exists so that oversized bodies cost nothing.
        if len(data) > self._max_size:
            raise _too_large(len(data), self._max_size)


DEFAULT_CODEC: Final = Codec()
"""A codec with the default 64 KiB limit."""
