"""Does an adapter implement a port? Checked at run time, since mypy does not
read the tests: every member of the protocol is there, is a coroutine function
where the port's is, and takes the same parameters (names, kinds, defaults)."""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable


def _members(port: type) -> list[str]:
    names: set[str] = set()
    for base in port.__mro__:
        if base in (Protocol, object) or not getattr(base, "_is_protocol", False):
            continue
        names |= {n for n in vars(base) if not n.startswith("_")}
        names |= {n for n in getattr(base, "__annotations__", {}) if not n.startswith("_")}
    return sorted(names)


def _parameters(function: object) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def assert_implements(adapter: object, port: type) -> None:
    # A runtime-checkable copy of the port, so the product's protocol stays as it is.
    checked = runtime_checkable(type(f"Checked{port.__name__}", (port, Protocol), {}))
    assert isinstance(adapter, checked), (
        f"{type(adapter).__name__} lacks a member of {port.__name__}"
    )
    for name in _members(port):
        wanted = inspect.getattr_static(port, name)
        if isinstance(wanted, property) or not callable(wanted):
            assert hasattr(adapter, name), name
            continue
        have = getattr(adapter, name)
        assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(wanted), (
            f"{type(adapter).__name__}.{name}: async where the port is not, or the reverse"
        )
        assert _parameters(have) == _parameters(wanted)[1:], (
            f"{type(adapter).__name__}.{name}{inspect.signature(have)} "
            f"differs from {port.__name__}.{name}{inspect.signature(wanted)}"
        )
