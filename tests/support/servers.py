"""The real servers as the tests start them beyond the conftest fixtures: the backend client
that counts what the IVR asked for, a proxy that counts what the backend was sent, the FastAGI
server with a manager (AMI) connection, and a port nobody listens on."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

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


class CountingProxy:
    """An HTTP proxy in front of the real backend, on a port of its own: what the backend was
    sent, request by request, as `METHOD /path`. `stop` makes the backend unreachable (the
    port refuses connections) and `start` brings it back on the same port."""

    def __init__(self, backend_url: str):
        self.backend_url = backend_url.rstrip("/")
        self.received: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _forward(self, request: web.Request) -> web.Response:
        self.received.append(f"{request.method} {request.path}")
        if self._client is None:
            self._client = aiohttp.ClientSession()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._client.request(
            request.method,
            self.backend_url + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as reply:
            body = await reply.read()
            kept = {k: v for k, v in reply.headers.items() if k.lower() == "content-type"}
            return web.Response(status=reply.status, body=body, headers=kept)
