"""What an `ivrs backend` process adds to the app the other tests start (backend.app.serving_app
over create_app)."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from backend.app import YOUNG_PASS_AFTER, create_app, serving_app
from backend.settings import BackendSettings
from tests.support.backend_process import backend_env, free_port, ivrs, post_when_up


async def test_a_backend_process_sets_its_garbage_collector_for_serving(
    backend_settings: BackendSettings,
) -> None:
    """Once started, `ivrs backend` freezes what it loaded (the collector's full passes, which
    stop every request, then walk only what requests made) and makes the young passes rarer.
    The tests' app does neither: a test process starting many backends would keep their garbage
    for good."""
    gc.unfreeze()
    thresholds = gc.get_threshold()
    for app, serving in (
        (create_app(backend_settings), False),
        (serving_app(backend_settings), True),
    ):
        runner = web.AppRunner(app)
        await runner.setup()  # on_startup: the database opened, then the collector set
        try:
            assert (gc.get_freeze_count() > 0) is serving
            assert (gc.get_threshold()[0] == YOUNG_PASS_AFTER) is serving
        finally:
            await runner.cleanup()
            gc.unfreeze()
            gc.set_threshold(*thresholds)


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_a_backend_process_logs_json_lines_and_a_line_a_request_only_at_debug(
    tmp_path: Path, level: str
) -> None:
    """The IVR sends a request at every step of every call: aiohttp's access line for each (not
    JSON: a log shipper cannot read it) cost the backend a tenth of its CPU (bench_backend), so
    it is written only at IVRS_LOG_LEVEL=debug."""
    port = free_port()
    env = backend_env(tmp_path, IVRS_API_TOKEN="t0k", IVRS_LOG_LEVEL=level)
    backend = await ivrs(env, "backend", "--port", str(port))
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0k"}) as http:
            url = f"http://127.0.0.1:{port}/v1/calls"
            assert await post_when_up(http, url, {"uniqueid": "1.1", "hotline": "39023333"}) == 201
    finally:
        backend.terminate()
        _, err = await asyncio.wait_for(backend.communicate(), 30)
    lines = err.decode().splitlines()
    access = [line for line in lines if "POST /v1/calls" in line]
    assert len(access) == (level == "debug")
    if level == "info":
        assert all(json.loads(line) for line in lines)
