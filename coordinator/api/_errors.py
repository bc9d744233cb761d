"""Errors as HTTP answers: a refusal of the operator's tools becomes 404, 409, 422
or 503 by what it says, a body that does not fit becomes 422 naming the field.

The tools raise one ``RequestRefusedError`` with a sentence for people (the CLI
prints it); the cases the API tells apart are the sentences' few fixed openings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from coordinator._errors import RequestRefusedError
from coordinator.api._types import Problem

__all__ = ["exception_handlers", "refused"]

_BY_OPENING = (
    ("no saga with id", 404),
    ("unknown service", 404),
    ("no dead letter", 404),
    ("the input does not fit", 422),
    ("a reason is required", 422),
    ("cursor:", 422),
    ("no coordinator took", 503),
    ("nothing receives", 503),
)


def _status(message: str) -> int:
    for opening, status in _BY_OPENING:
        if message.startswith(opening):
            return status
    return 409


@contextmanager
def refused() -> Iterator[None]:
    """Turn a ``RequestRefusedError`` in the block into its HTTP answer."""
    try:
        yield
    except RequestRefusedError as exc:
        raise HTTPException(detail=str(exc), status_code=_status(str(exc))) from exc


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    fields = [
        f"{item.get('key') or item.get('source', '')}: {item.get('message', '')}"
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(fields) or exc.detail
    return Response(
        Problem(status_code=422, detail=detail), status_code=422, media_type=MediaType.JSON
    )


exception_handlers: dict[Any, Any] = {ValidationException: _validation}
