"""What an `ivrs backend` process adds to the app the other tests start (backend.app.serving_app
over create_app)."""

from __future__ import annotations

import gc

from aiohttp import web

from backend.app import create_app, serving_app
from backend.settings import BackendSettings


async def test_a_backend_process_leaves_its_start_up_objects_out_of_full_collections(
    backend_settings: BackendSettings,
) -> None:
    """Once started, `ivrs backend` freezes what it loaded: the collector's full passes, which
    stop every request, then walk only what requests made. The tests' app does not: a test
    process starting many backends would keep their garbage for good."""
    gc.unfreeze()
    for app, frozen in (
        (create_app(backend_settings), False),
        (serving_app(backend_settings), True),
    ):
        runner = web.AppRunner(app)
        await runner.setup()  # on_startup: the database opened, then the freeze
        try:
            assert (gc.get_freeze_count() > 0) is frozen
        finally:
            await runner.cleanup()
            gc.unfreeze()
