"""The REST API: sagas, breakers, dead letters, stuck sagas and definitions over
HTTP, on the operator's client and tools the CLI uses.

Mounted on ``saga run --http`` next to ``/metrics``, or served alone by ``saga
api``; ``api_extras`` is what either hands its HTTP server. Tokens and roles
are ``coordinator.service``'s (``Tokens``, ``requires``).
"""

from contracts._public import show_as_public
from coordinator.api._app import BackendFactory, api_extras
from coordinator.api._backend import Backend, open_backend
from coordinator.api._serve import serve_api
from coordinator.api._types import (
    ActionResult,
    CancelRequest,
    Definition,
    Graph,
    OverrideRequest,
    PauseRequest,
    Problem,
    PurgeRequest,
    RedriveRequest,
    SignalRequest,
    StartRequest,
)

__all__ = [
    "ActionResult",
    "Backend",
    "BackendFactory",
    "CancelRequest",
    "Definition",
    "Graph",
    "OverrideRequest",
    "PauseRequest",
    "Problem",
    "PurgeRequest",
    "RedriveRequest",
    "SignalRequest",
    "StartRequest",
    "api_extras",
    "open_backend",
    "serve_api",
]

show_as_public(__name__, globals(), __all__)
