"""The processes: settings from the environment, servers waited for, signals, the loop.

Everything here is the edge: the only place that reads the environment and
turns settings into connected adapters.
"""

from contracts._public import show_as_public
from coordinator.service._auth import (
    LOCAL,
    ROLE_RANK,
    ExposedWithoutTokensError,
    Principal,
    Role,
    TokenEntry,
    Tokens,
    auth_middleware,
    check_exposure,
    new_token,
    requires,
    session_config,
)
from coordinator.service._http import HttpAddressError, HttpExtras
from coordinator.service._loading import load_definition, load_object
from coordinator.service._logging import configure_logging
from coordinator.service._observe import Observed, observe, watch_servers
from coordinator.service._payloads import Payloads
from coordinator.service._process import loop_name, run_loop, until_signalled
from coordinator.service._serve import serve_coordinator
from coordinator.service._settings import Settings, http_address
from coordinator.service._startup import wait_for_server
from coordinator.service._tls import redis_client, tls_context
from coordinator.service._wiring import (
    Operator,
    check_signers,
    connect_rabbit,
    connect_servers,
    keyring_of,
    open_client,
    open_operator,
    record_deployment,
    recorded_deployment,
    recorded_shapes,
    resigner,
    signed,
)

__all__ = [
    "LOCAL",
    "ROLE_RANK",
    "ExposedWithoutTokensError",
    "HttpAddressError",
    "HttpExtras",
    "Payloads",
    "Principal",
    "Role",
    "TokenEntry",
    "Tokens",
    "auth_middleware",
    "check_exposure",
    "new_token",
    "requires",
    "session_config",
    "recorded_deployment",
    "recorded_shapes",
    "Observed",
    "Operator",
    "Settings",
    "redis_client",
    "tls_context",
    "configure_logging",
    "check_signers",
    "connect_rabbit",
    "connect_servers",
    "keyring_of",
    "http_address",
    "load_definition",
    "load_object",
    "loop_name",
    "open_client",
    "observe",
    "open_operator",
    "resigner",
    "signed",
    "record_deployment",
    "run_loop",
    "serve_coordinator",
    "until_signalled",
    "wait_for_server",
    "watch_servers",
]

show_as_public(__name__, globals(), __all__)
