"""Rendering and the principal: the templates (Jinja2, every value escaped), the
CSRF token for forms, the notice shown once after an action, and who may do what.

Litestar's template config is one per app, and the app is composed elsewhere
(``saga run --http``, ``saga api``) with the REST API beside it; so the
dashboard renders its templates itself and stays one ``Router``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import MediaType, Request, Response
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState

from coordinator.service import ROLE_RANK, Principal, Role

__all__ = ["HERE", "may", "notice", "page", "principal_of"]

HERE = Path(__file__).parent

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # saga data is never trusted: every value is escaped
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

Req = Request[Any, Any, Any]


def principal_of(request: Req) -> Principal | None:
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


def may(request: Req, role: Role) -> bool:
    """Whether the request's principal ranks at least ``role``."""
    who = principal_of(request)
    return who is not None and ROLE_RANK[who.role] >= ROLE_RANK[role]


def notice(request: Req, text: str, *, error: bool = False) -> None:
    """A line for the next page this browser shows (kept in its session)."""
    if "session" in request.scope:
        request.session["notice"] = {"text": text, "error": error}


def _take_notice(request: Req) -> dict[str, Any] | None:
    if "session" not in request.scope or not request.session:
        return None
    found = request.session.pop("notice", None)
    return found if isinstance(found, dict) else None


def page(request: Req, template: str, *, status_code: int = 200, **context: Any) -> Response[str]:
    """``template`` rendered with ``context`` and what every page needs."""
    who = principal_of(request)
    html = _templates.get_template(template).render(
        principal=who,
        can_act=may(request, "operator"),
        can_admin=may(request, "admin"),
        csrf_token=value_or_default(ScopeState.from_scope(request.scope).csrf_token, ""),
        notice=_take_notice(request),
        path=request.url.path,
        **context,
    )
    return Response(html, media_type=MediaType.HTML, status_code=status_code)
