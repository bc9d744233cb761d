"""The ``saga`` command line: one module per command group over the client and the service."""

from coordinator.cli._app import app, main

__all__ = ["app", "main"]
