"""What a bundling call costs the backend, counted where it arrives: the real backend over HTTP
behind a counting proxy, the real FastAGI server, the simulated Asterisk on a real socket.

A bundling call is five requests (docs/design.md, "Requests of a call"): the opening (which
answers the remembered language and the service status), the login (which answers the recent
vehicles), one cargo check per CCRN, the bundle, and the end, which carries every event of
the call. When the backend is unreachable at the end, the end and its events wait in the
spool and arrive whole once it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backend.app import RunningBackend
from backend.database import Database
from backend_client.spool import Spool
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, place_call
from tests.support.servers import CountingProxy
from tests.support.stored import stored_bundles, stored_events
from tests.support.truckers import MakeTrucker, Trucker

CALLER = "91234567"


@pytest.fixture
async def proxy(backend: RunningBackend) -> AsyncIterator[CountingProxy]:
    counting = CountingProxy(backend.url)
    await counting.start()
    yield counting
    await counting.stop()


@pytest.fixture
async def agi(
    proxy: CountingProxy, backend: RunningBackend, tmp_path: Path
) -> AsyncIterator[RunningAgi]:
    settings = replace(
        IvrSettings(),
        backend_url=proxy.url,
        api_token=backend.settings.api_token,
        backend_timeout=2.0,
        breaker_reset_s=0.5,  # the backend's return is tried soon
        agi_port=0,
        spool_dir=str(tmp_path / "spool"),
    )
    running = await start_agi_server(settings, port=0)
    yield running
    await running.stop(grace=5)


async def call(agi: RunningAgi, keys: str, trucker: Trucker, **options: Any) -> CallRecord:
    return await place_call(
        agi.host, agi.port, keys=keys, totp=trucker.code, caller_id=CALLER, **options
    )


def bundling_requests(call_id: int, ccrn: str) -> list[str]:
    return [
        "POST /v1/calls",
        "POST /v1/sessions",
        f"GET /v1/cargo/{ccrn}",
        "POST /v1/bundles",
        f"POST /v1/calls/{call_id}/end",
    ]


async def test_a_bundling_call_sends_the_backend_five_requests(
    make_trucker: MakeTrucker, agi: RunningAgi, proxy: CountingProxy, db: Database
) -> None:
    trucker = await make_trucker()
    first = await call(agi, trucker.bundle_keys(), trucker)
    assert first.prompt_ids[-1] == "call.goodbye" and "bundle.submitted" in first.prompt_ids
    stored, events = await stored_events(db, first.uniqueid)
    assert proxy.received == bundling_requests(stored.id, trucker.ccrns[0])
    # Every event of the call came with its end: each stage, and each prompt heard.
    stages = [e.name for e in events if e.kind == "stage"]
    assert stages[:3] == ["language", "login", "bundle_start"] and stages[-1] == "end"
    prompts = [e.name for e in events if e.kind == "prompt"]
    assert prompts == [p for p in first.prompt_ids if p in prompts]
    assert (stored.outcome, stored.last_stage, stored.language) == (
        "completed",
        "bundle_done",
        "en",
    )

    # Called again from the same number: its language is remembered (no menu), the login
    # offered the vehicle just used (key 1), and still five requests.
    proxy.received.clear()
    again = await call(agi, f"{trucker.login_keys()} 1 {trucker.ccrns[1]}# 2", trucker)
    assert "language.menu" not in again.prompt_ids
    assert "vehicle.recent" in again.prompt_ids and "bundle.submitted" in again.prompt_ids
    second, _ = await stored_events(db, again.uniqueid)
    assert proxy.received == bundling_requests(second.id, trucker.ccrns[1])
    assert sorted(b.vehicle_mark for b in await stored_bundles(db)) == [trucker.vehicle] * 2


async def test_a_second_vehicle_in_the_call_is_offered_from_the_login_answer_kept_current(
    make_trucker: MakeTrucker, agi: RunningAgi, proxy: CountingProxy, db: Database
) -> None:
    """No request asks for recent vehicles again: the vehicle bundled in this call comes first."""
    trucker = await make_trucker()
    keys = f"{trucker.bundle_keys()} 1 1 {trucker.ccrns[1]}# 2"  # another bundle: vehicle key 1
    record = await call(agi, keys, trucker)
    assert record.prompt_ids.count("bundle.submitted") == 2
    assert not [r for r in proxy.received if "vehicle" in r]
    bundles = await stored_bundles(db)
    assert [b.vehicle_mark for b in bundles] == [trucker.vehicle] * 2


async def test_the_end_waits_in_the_spool_when_the_backend_is_unreachable_and_nothing_is_lost(
    make_trucker: MakeTrucker, agi: RunningAgi, proxy: CountingProxy, db: Database
) -> None:
    trucker = await make_trucker()

    async def backend_gone_after_the_receipt(command: Any) -> None:
        if command.prompt_id == "bundle.submitted" and proxy.port:
            await proxy.stop()

    record = await call(
        agi, trucker.bundle_keys(), trucker, on_command=backend_gone_after_the_receipt
    )
    assert record.prompt_ids[-1] == "call.goodbye"  # the caller heard nothing of it
    # The end and its events wait on disk.
    assert await asyncio.to_thread(Spool(agi.app.settings.spool_dir).pending)
    stored, _ = await stored_events(db, record.uniqueid)
    assert stored.outcome is None
    sent_before = list(proxy.received)

    await proxy.start()  # the backend is back, on the same address
    await agi.app.outbox.delivered()
    stored, events = await stored_events(db, record.uniqueid)
    assert (stored.outcome, stored.last_stage) == ("completed", "bundle_done")
    prompts = [e.name for e in events if e.kind == "prompt"]
    assert prompts == [p for p in record.prompt_ids]  # every prompt of the call, in order
    delivered = proxy.received[len(sent_before) :]
    # The deliverer opens the call again (the same call: its uniqueid), then ends it once.
    assert [r for r in delivered if r.endswith("/end")] == [f"POST /v1/calls/{stored.id}/end"]
