"""The real servers as the tests start them beyond the conftest fixtures: the backend client
that counts what the IVR asked for, the FastAGI server with a manager (AMI) connection, and a
port nobody listens on."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from ami_client import Ami
from backend.app import RunningBackend
from backend_client import BackendClient
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings


class CountingBackendClient(BackendClient):
    """The real client, remembering which API paths the IVR asked for."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.requests: list[str] = []

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests.append(f"{method} {path}")
        return await super()._request(method, path, **kwargs)


async def ivr_server(backend: RunningBackend, tmp_path: Path, ami: Ami | None) -> RunningAgi:
    settings = replace(
        IvrSettings(),
        backend_url=backend.url,
        api_token=backend.settings.api_token,
        backend_timeout=2.0,
        agi_port=0,
        spool_dir=str(tmp_path / "spool"),
    )
    return await start_agi_server(settings, port=0, ami=ami)


async def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return int(port)
