"""The processes: settings from the environment, servers waited for, signals, the loop.

Everything here is the edge: the only place that reads the environment and
turns settings into connected adapters.
"""

from contracts._public import show_as_public
from coordinator.service._loading import load_definition, load_object
from coordinator.service._logging import configure_logging
from coordinator.service._process import loop_name, run_loop, until_signalled
from coordinator.service._serve import serve_coordinator
from coordinator.service._settings import Settings
from coordinator.service._startup import wait_for_server
from coordinator.service._wiring import (
    Operator,
    connect_rabbit,
    connect_servers,
    open_client,
    open_operator,
    record_deployment,
)

__all__ = [
    "Operator",
    "Settings",
    "configure_logging",
    "connect_rabbit",
    "connect_servers",
    "load_definition",
    "load_object",
    "loop_name",
    "open_client",
    "open_operator",
    "record_deployment",
    "run_loop",
    "serve_coordinator",
    "until_signalled",
    "wait_for_server",
]

show_as_public(__name__, globals(), __all__)
