"""The JSON Schema of the wire messages, for participants in other languages, and the
schema helpers the AsyncAPI document (``_asyncapi``) shares."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Final

import msgspec

from contracts._messages import CONTRACTS_VERSION, WireMessage

__all__ = ["WIRE_MESSAGES", "components", "json_schema", "summary"]

WIRE_MESSAGES: Final[tuple[type[msgspec.Struct], ...]] = typing.get_args(WireMessage)


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) document describing every wire message.

    A message is valid when it matches exactly one entry of the top-level
    ``oneOf``; the ``type`` property (the tag) tells which. Unknown properties
    are allowed on purpose: receivers ignore them, so senders may add fields.

    Returns:
        A new JSON-serialisable dict on each call.
    """
    refs, defs = components("#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "saga-coordinator wire messages",
        "description": (
            f"Contract version {CONTRACTS_VERSION}. JSON objects tagged by their `type` "
            "property; unknown properties are ignored by receivers."
        ),
        "oneOf": list(refs),
        "$defs": defs,
    }


def components(
    ref_template: str, extra: tuple[type[object], ...] = ()
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """The references to the wire messages (then to ``extra``) and the schemas they name."""
    refs, defs = msgspec.json.schema_components((*WIRE_MESSAGES, *extra), ref_template=ref_template)
    for schema in defs.values():
        # msgspec copies docstrings verbatim; strip the source indentation so the
        # descriptions read well in generated docs and code.
        if "description" in schema:
            schema["description"] = inspect.cleandoc(schema["description"])
    return refs, defs


def summary(cls: type) -> str:
    """The first line of a class's docstring, else its name."""
    doc = inspect.getdoc(cls) or cls.__name__
    return doc.splitlines()[0]
