"""The ``saga`` command line: one module per command group over the client and the service."""

from contracts._public import show_as_public
from coordinator.cli._app import app, main

__all__ = ["app", "main"]

show_as_public(__name__, globals(), __all__)
