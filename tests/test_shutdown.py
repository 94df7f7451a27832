"""Graceful shutdown of the FastAGI server: it stops accepting at once (so `hagi://` sends new
calls to the next server), lets live calls finish within the grace period, says goodbye to
those still there after it (at their next command), cuts off any that never get to one, and
`ivrs agi` does all this on SIGTERM.

A call is held live by its simulated caller: the `on_command` hook waits at the main menu
until the test lets it go on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backend.app import RunningBackend
from backend.database import Database
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, Command, place_call
from tests.support.stored import stored_bundles, stored_call
from tests.support.truckers import MakeTrucker, Trucker


@pytest.fixture
def settings(backend: RunningBackend, tmp_path: Path) -> IvrSettings:
    return replace(
        IvrSettings(),
        backend_url=backend.url,
        api_token=backend.settings.api_token,
        spool_dir=str(tmp_path / "spool"),
    )


@pytest.fixture
async def agi(settings: IvrSettings) -> AsyncIterator[RunningAgi]:
    running = await start_agi_server(settings, port=0)
    yield running
    await running.stop(grace=0, goodbye_limit=0)  # a no-op once the test has stopped it


class HeldCall:
    """A bundling call whose caller waits at the main menu until `go_on()`."""

    def __init__(self, host: str, port: int, trucker: Trucker):
        self.at_menu = asyncio.Event()
        self._released = asyncio.Event()
        self.task: asyncio.Task[CallRecord] = asyncio.create_task(
            place_call(
                host, port, keys=trucker.bundle_keys(), totp=trucker.code, on_command=self._hold
            )
        )

    async def _hold(self, command: Command) -> None:
        if command.prompt_id == "vehicle.other_services" and not self.at_menu.is_set():
            self.at_menu.set()
            await self._released.wait()

    def go_on(self) -> None:
        self._released.set()

    async def held(self) -> None:
        """Wait until the caller is at the menu (or the call failed before)."""
        waiting = asyncio.create_task(self.at_menu.wait())
        await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert self.at_menu.is_set(), f"the call ended first: {self.task.result().prompt_ids}"


async def refused(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_live_calls_finish_within_the_grace_period_and_new_ones_are_refused(
    agi: RunningAgi, make_trucker: MakeTrucker, db: Database
) -> None:
    live = HeldCall(agi.host, agi.port, await make_trucker())
    await live.held()

    stopping = asyncio.create_task(agi.stop(grace=60))
    await asyncio.sleep(0)  # let stop() close the listening socket
    assert await refused(agi.host, agi.port)
    assert not stopping.done()  # it waits for the live call

    live.go_on()
    record = await live.task
    await asyncio.wait_for(stopping, 10)
    assert "bundle.submitted" in record.prompt_ids and record.prompt_ids[-1] == "call.goodbye"
    assert (await stored_call(db, record.uniqueid)).outcome == "completed"
    assert len(await stored_bundles(db)) == 1


async def test_calls_past_the_grace_period_hear_goodbye_at_their_next_command(
    agi: RunningAgi, make_trucker: MakeTrucker, db: Database
) -> None:
    live = HeldCall(agi.host, agi.port, await make_trucker())
    await live.held()

    stopping = asyncio.create_task(agi.stop(grace=0.1))
    await agi.app.ending_calls.wait()
    live.go_on()  # the menu prompt ends; the server's next command is the goodbye
    record = await live.task
    await asyncio.wait_for(stopping, 10)

    assert record.prompt_ids[-2:] == ["vehicle.other_services", "call.goodbye"]
    assert record.closed_by == "server" and not record.hung_up
    call = await stored_call(db, record.uniqueid)
    assert call.outcome == "server_shutdown" and call.last_stage == "vehicle"
    assert not await stored_bundles(db)


async def test_a_call_that_never_reaches_a_next_command_is_cut_off_after_the_limit(
    agi: RunningAgi, make_trucker: MakeTrucker, db: Database
) -> None:
    live = HeldCall(agi.host, agi.port, await make_trucker())  # never let go on
    await live.held()

    await asyncio.wait_for(agi.stop(grace=0.1, goodbye_limit=0.1), 10)
    assert not agi.app.connections and agi.app.idle.is_set()
    live.go_on()
    record = await live.task  # the server closed its side
    assert record.closed_by == "server"
    assert (await stored_call(db, record.uniqueid)).outcome == "server_shutdown"


# --- `ivrs agi` and SIGTERM ---------------------------------------------------------------------


class AgiProcess:
    """`ivrs agi` as a child process; its JSON log lines read as they come."""

    def __init__(self, settings: IvrSettings):
        self.env = {
            **os.environ,
            "IVRS_BACKEND_URL": settings.backend_url,
            "IVRS_API_TOKEN": settings.api_token,
            "IVRS_SPOOL_DIR": settings.spool_dir,
            "IVRS_SHUTDOWN_GRACE_S": "60",
            "IVRS_LOG_FORMAT": "json",
            "IVRS_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "agi",
            "--port",
            "0",
            env=self.env,
            stderr=asyncio.subprocess.PIPE,
        )
        self.port = int((await self.log_line("agi_listening"))["port"])

    async def log_line(self, event: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                return dict(entry)
        raise AssertionError(f"ivrs agi ended without logging {event}")


@pytest.fixture
async def agi_process(settings: IvrSettings) -> AsyncIterator[AgiProcess]:
    process = AgiProcess(settings)
    await process.start()
    yield process
    assert process.process is not None
    if process.process.returncode is None:
        process.process.kill()
        await process.process.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_ivrs_agi_on_a_signal_drains_its_calls_and_exits_cleanly(
    agi_process: AgiProcess, make_trucker: MakeTrucker, db: Database, sig: signal.Signals
) -> None:
    assert agi_process.process is not None
    live = HeldCall("127.0.0.1", agi_process.port, await make_trucker())
    await live.held()

    agi_process.process.send_signal(sig)
    stopping = await agi_process.log_line("agi_stopping")
    assert stopping["live_calls"] == 1
    assert await refused("127.0.0.1", agi_process.port)

    live.go_on()
    record = await live.task
    await agi_process.log_line("agi_stopped")
    assert await asyncio.wait_for(agi_process.process.wait(), 10) == 0
    assert "bundle.submitted" in record.prompt_ids and record.prompt_ids[-1] == "call.goodbye"
    assert (await stored_call(db, record.uniqueid)).outcome == "completed"
