"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from tests.support.live import start_gateway
from tests.support.ws import GatewayClient


@pytest.fixture
def gateway_factory(transactional_db, tmp_path):
    """Start real gateway processes (``manage.py gateway``) against the test database."""
    started = []

    def start(**kwargs):
        gateway = start_gateway(tmp_path, **kwargs)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def live_gateway(gateway_factory):
    """One running gateway with token auth (token ``test-token``) and the default config."""
    return gateway_factory()


@pytest.fixture
async def ws_client(live_gateway):
    """A connected, authenticated WebSocket client of ``live_gateway``."""
    client = GatewayClient(live_gateway.ws_url)
    await client.connect(token=live_gateway.token)
    yield client
    await client.close()


@pytest.fixture
def gateway_config():
    """Override the loaded openclaw.json for in-process tests: ``gateway_config({...})``."""
    from openclaw_site.config import override_config

    active = []

    def apply(data: dict):
        manager = override_config(data)
        manager.__enter__()
        active.append(manager)

    yield apply
    for manager in reversed(active):
        manager.__exit__(None, None, None)
