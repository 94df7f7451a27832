"""The backend killed (SIGKILL) and restarted during 50 calls, on PostgreSQL: every caller hears
a spoken ending (goodbye, after `error.service_unavailable` for those the outage caught), and
once the backend is back every call log is complete in the database: every prompt the caller
heard, in order, no event twice, and the outcome the caller lived.

The backend the IVR uses is a process of its own (`ivrs backend`), so it can die for real; the
in-process `backend` fixture only prepares the data, on the same database. The calls come in
three waves: 20 at once, the backend killed when the tenth of them asks for a CCRN; 15 more
while it is dead (their call logs cannot even be opened: all goes to the spool), the backend
restarted as they start; 15 after the spool is delivered, which must all bundle.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from backend.database import Database
from backend.models import Call, CallEvent
from backend.settings import BackendSettings
from harness.postgres import free_port
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, Command, place_call
from tests.support.stored import stored_bundles
from tests.support.truckers import MakeTrucker, Trucker

FIRST_WAVE, SECOND_WAVE, THIRD_WAVE = 20, 15, 15
KILL_AT_CCRN_PROMPT = 10
# The IVR's own `backend` events in these calls; the backend adds its own (login_ok, ...) with
# its clock, stored as their requests happen, so only the IVR's are in sending order.
IVR_BACKEND_EVENTS = {"login", "check_cargo", "bundle"}
# Fifty callers, the FastAGI server, a backend and PostgreSQL share two cores: a slow answer is
# not an outage here (the breaker and the spool are what this tests).
BACKEND_TIMEOUT_S = 30.0


@pytest.fixture
def database() -> str:
    return "postgresql"


class BackendProcess:
    """`ivrs backend` as a child process on a fixed port, which can be killed and restarted."""

    def __init__(self, settings: BackendSettings, port: int, workdir: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "IVRS_DATABASE_URL": settings.database_url,
            "IVRS_API_TOKEN": settings.api_token,
            "IVRS_SECRET_KEY": settings.secret_key.decode(),
            "IVRS_ARGON2_PROFILE": "test",
            "IVRS_RECORDINGS_DIR": str(workdir / "recordings"),
            "IVRS_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",  # the "Running on" line comes at once
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "backend",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        while b"Running on" not in (line := await self.process.stdout.readline()):
            assert line, "the backend process ended before serving"

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


@pytest.fixture
async def backend_process(
    backend_settings: BackendSettings, tmp_path: Path
) -> AsyncIterator[BackendProcess]:
    process = BackendProcess(backend_settings, free_port(), tmp_path)
    await process.start()
    yield process
    if process.process is not None and process.process.returncode is None:
        await process.kill()


@pytest.fixture
async def agi(backend_process: BackendProcess, tmp_path: Path) -> AsyncIterator[RunningAgi]:
    settings = replace(
        IvrSettings(),
        backend_url=backend_process.url,
        api_token=backend_process.env["IVRS_API_TOKEN"],
        backend_timeout=BACKEND_TIMEOUT_S,
        breaker_failures=3,
        breaker_reset_s=0.2,
        spool_dir=str(tmp_path / "spool"),
    )
    running = await start_agi_server(settings, port=0)
    yield running
    await running.stop(grace=5)


def real_time_code(trucker: Trucker) -> Callable[[], str]:
    """The token's code now: the backend process runs on the real clock."""
    return pyotp.TOTP(trucker.seed, digits=6, interval=60).now


async def stored_log(db: Database, uniqueid: str) -> tuple[Call, list[CallEvent]]:
    async with db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
        assert call is not None, f"no call log for {uniqueid}"
        events = await session.scalars(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)
        )
        return call, list(events)


@pytest.mark.slow  # fifty calls across a backend restart (~15 s)
async def test_backend_killed_and_restarted_during_fifty_calls_loses_no_call_log(
    make_trucker: MakeTrucker,
    db: Database,
    backend_process: BackendProcess,
    agi: RunningAgi,
) -> None:
    truckers = await asyncio.gather(
        *(make_trucker(cargo=1) for _ in range(FIRST_WAVE + SECOND_WAVE + THIRD_WAVE))
    )
    killed, second_wave_started = asyncio.Event(), asyncio.Event()
    ccrn_prompts = second_wave_arrived = 0

    async def kill_at_a_ccrn_prompt(command: Command) -> None:
        nonlocal ccrn_prompts
        if command.prompt_id == "bundle.ccrn":
            ccrn_prompts += 1
            if ccrn_prompts == KILL_AT_CCRN_PROMPT:
                await backend_process.kill()
                killed.set()

    async def start_together(command: Command) -> None:
        """Hold each call of the second wave at its first command until all have started
        (their call logs have been tried while the backend is dead)."""
        nonlocal second_wave_arrived
        if command.index == 0:
            second_wave_arrived += 1
            if second_wave_arrived == SECOND_WAVE:
                second_wave_started.set()
            await second_wave_started.wait()

    def call(trucker: Trucker, on_command: Any) -> asyncio.Task[CallRecord]:
        return asyncio.create_task(
            place_call(
                agi.host,
                agi.port,
                keys=trucker.bundle_keys(),
                totp=real_time_code(trucker),
                on_command=on_command,
            )
        )

    first = [call(t, kill_at_a_ccrn_prompt) for t in truckers[:FIRST_WAVE]]
    await killed.wait()
    second = [call(t, start_together) for t in truckers[FIRST_WAVE:-THIRD_WAVE]]
    await second_wave_started.wait()
    await backend_process.start()  # while the second wave's calls go on
    records = await asyncio.gather(*first, *second)
    await asyncio.wait_for(agi.app.outbox.delivered(), 60)  # the backend is back
    third = [call(t, None) for t in truckers[-THIRD_WAVE:]]
    records += await asyncio.gather(*third)
    await asyncio.wait_for(agi.app.outbox.delivered(), 60)

    # Every caller heard an ending, and the server closed every call.
    assert all(r.prompt_ids[-1] == "call.goodbye" for r in records)
    assert all(r.closed_by == "server" and not r.hung_up for r in records)
    outcomes = {}
    for r in records:
        if "bundle.submitted" in r.prompt_ids:
            outcomes[r.uniqueid] = "completed"
        else:
            assert r.prompt_ids[-2:] == ["error.service_unavailable", "call.goodbye"]
            outcomes[r.uniqueid] = "backend_unavailable"
    caught = [r for r in records if outcomes[r.uniqueid] == "backend_unavailable"]
    assert len(caught) >= SECOND_WAVE  # the second wave, and the first wave's calls in flight
    assert all(outcomes[r.uniqueid] == "completed" for r in records[-THIRD_WAVE:])

    # Every call log is in the database, complete, in order, each event once.
    for r in records:
        call_log, stored = await stored_log(db, r.uniqueid)
        events = [e for e in stored if e.kind != "backend" or e.name in IVR_BACKEND_EVENTS]
        assert call_log.ended_at is not None and call_log.outcome == outcomes[r.uniqueid]
        assert [e.name for e in events if e.kind == "prompt"] == r.prompt_ids
        assert [(e.kind, e.name) for e in events[:1]] == [("stage", "language")]
        assert (events[-1].kind, events[-1].name) == ("stage", "end")
        assert events[-1].detail["outcome"] == call_log.outcome
        assert [e.at for e in events] == sorted(e.at for e in events)  # sent in call order
        assert len({(e.at, e.kind, e.name) for e in events}) == len(events)
    # Every completed call's bundle is stored. A call told the service is unavailable may
    # have one too: its submission committed just before the kill, the answer lost with it.
    by_call_id = {(await stored_log(db, r.uniqueid))[0].id: r for r in records}
    stored = [by_call_id[b.call_id] for b in await stored_bundles(db)]
    assert {r.uniqueid for r in stored} >= {u for u, o in outcomes.items() if o == "completed"}
    assert len(stored) == len({r.uniqueid for r in stored})  # a retried submission: one bundle
    assert all("bundle.ccrn" in r.prompt_ids for r in stored)
