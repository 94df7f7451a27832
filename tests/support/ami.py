"""The simulated AMI server, the FastAGI server's AMI connection to it, and the mutes it saw:
fixtures for the tests of recording mutes and of the security of the mute."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ami_client import Ami
from backend.app import RunningBackend
from ivr.server import RunningAgi
from simulator import RunningAmi, start_ami_server
from tests.support.servers import ivr_server

SECRET = "ami-test-secret"


@pytest.fixture
async def ami_server() -> AsyncIterator[RunningAmi]:
    server = await start_ami_server(username="ivrs", secret=SECRET)
    yield server
    await server.stop()


@pytest.fixture
async def ami(ami_server: RunningAmi) -> AsyncIterator[Ami]:
    connection = Ami("127.0.0.1", ami_server.port, "ivrs", SECRET, timeout=2)
    await connection.start()
    assert await connection.wait_ready(5)
    yield connection
    await connection.close()


@pytest.fixture
async def ivr_with_ami(
    backend: RunningBackend, tmp_path: Path, ami: Ami
) -> AsyncIterator[RunningAgi]:
    running = await ivr_server(backend, tmp_path, ami)
    yield running
    await running.stop(grace=5)


def mutes(server: RunningAmi) -> list[tuple[str, str]]:
    return [(a["Channel"], a["State"]) for a in server.actions if a["Action"] == "MixMonitorMute"]
