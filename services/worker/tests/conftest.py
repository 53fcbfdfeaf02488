"""Fixtures of the worker tests: the fake callback API served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# pytest's importlib mode imports test modules by their path from the repository root
# (`services.worker.tests.*`), so the shared support module is imported the same way.
from services.worker.tests.worker_test_support import FakeCallbackApi, ServedApp


@pytest.fixture(scope="session")
def fake_api_server() -> Iterator[FakeCallbackApi]:
    """One fake callback API for the session, served on loopback."""
    api = FakeCallbackApi()
    server = ServedApp(api.app).start()
    api.base_url = server.url
    yield api
    server.stop()


@pytest.fixture
def api(fake_api_server: FakeCallbackApi) -> FakeCallbackApi:
    """The fake callback API with no scripts and no recorded requests."""
    fake_api_server.reset()
    return fake_api_server
