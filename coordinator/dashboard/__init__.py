"""The web dashboard: sagas, one saga's timeline, graph and actions, breakers, dead
letters and stuck sagas, server-rendered and kept live with htmx.

``dashboard_router(client_factory, tokens=...)`` is a Litestar ``Router`` under
``/ui`` with its templates (rendered here, Jinja2, autoescaped) and static files
(``/ui/static``: a stylesheet, and pinned copies of htmx and Mermaid, see
``static/vendor/README.md``). The app it is registered on provides the rest:
``auth_middleware`` (who is asking), the session (``session_config``) and a
``CSRFConfig``. It reads and acts through the operator's client and repair tools,
as the CLI does (`Backend`, `open_backend`).
"""

from contracts._public import show_as_public
from coordinator.dashboard._backend import Backend, BackendFactory, open_backend
from coordinator.dashboard._router import dashboard_router

__all__ = ["Backend", "BackendFactory", "dashboard_router", "open_backend"]

show_as_public(__name__, globals(), __all__)
