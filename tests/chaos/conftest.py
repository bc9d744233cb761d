"""Fixtures of the chaos suite: those of the end-to-end suite, and proxies.

The chaos scenarios run the same processes as tests/e2e, through the same
`Deployment`, so its fixtures (a deployment per test, logs on failure,
cleanup of the namespace) are taken from there rather than copied.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).parent))

from proxy import Proxy

HERE = Path(__file__).parent

# tests/e2e/conftest.py, loaded under a name of its own: pytest loads it as a
# conftest only for the tests below tests/e2e.
_spec = importlib.util.spec_from_file_location("e2e_conftest", HERE.parent / "e2e" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)

pytest_runtest_makereport = _e2e.pytest_runtest_makereport
deploy = _e2e.deploy
redis_server = _e2e.redis_server
rabbit_server = _e2e.rabbit_server


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[..., Proxy]]:
    """``await proxies(upstream_url, name=)`` starts a `Proxy`; all are closed at teardown."""
    made: list[Proxy] = []

    async def make(upstream: str, *, name: str = "proxy", seed: int = 0) -> Proxy:
        proxy = await Proxy(upstream, name=name, seed=seed).start()
        made.append(proxy)
        return proxy

    yield make  # type: ignore[misc]
    for proxy in made:
        proxy.heal()
        await proxy.close()
