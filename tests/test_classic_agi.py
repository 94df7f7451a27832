"""Classic AGI (agi_scripts/ivrs_agi.py): one process per call on stdin/stdout, driven by the
simulator as Asterisk drives a local AGI script (run_classic_agi): the same flow bundles, the
recording is stopped around the secrets over AGI, and a hang-up (SIGHUP, never a HANGUP line)
ends the process cleanly with the call log closed."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backend.app import RunningBackend
from backend_client import BackendClient
from backend_client.call_log import deliver_left_spools
from backend_client.spool import Spool
from ivr.server import start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, SimulatedAsterisk, run_classic_agi
from tests.conftest import Trucker, stored_bundles, stored_call
from tests.test_backend_client import closed_port, stored_events

SCRIPT = [sys.executable, "-m", "agi_scripts.ivrs_agi"]


@pytest.fixture
def agi_env(backend: RunningBackend, tmp_path: Path) -> dict[str, str]:
    """What Asterisk's environment gives the script (the same IVRS_* as `ivrs agi`)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "IVRS_BACKEND_URL": backend.url,
        "IVRS_API_TOKEN": backend.settings.api_token,
        "IVRS_SPOOL_DIR": str(tmp_path / "spool"),
        "IVRS_LOG_LEVEL": "warning",
    }


async def classic_call(env: dict[str, str], keys: str, **options: Any) -> CallRecord:
    return await run_classic_agi(
        SCRIPT, env=env, script_path="/usr/local/bin/ivrs-agi", keys=keys, **options
    )


async def test_a_classic_agi_call_bundles_like_a_fastagi_one(
    agi_env: dict[str, str], make_trucker: Callable[..., Any], db: Any, tmp_path: Path
) -> None:
    trucker: Trucker = await make_trucker()
    record = await classic_call(agi_env, trucker.bundle_keys(), totp=trucker.code)
    assert record.exit_code == 0
    assert record.prompt_ids[-1] == "call.goodbye" and "bundle.submitted" in record.prompt_ids
    [bundle] = await stored_bundles(db)
    assert bundle.vehicle_mark == trucker.vehicle
    logged = await stored_call(db, record.uniqueid)
    assert logged.outcome == "completed"
    assert record.closed_by == "server" and not record.hung_up and record.sighups == 0
    assert record.trailing == []  # no HANGUP line after the script closed its stdout
    commands = [e.command for e in record.exchanges]
    assert commands[:2] == ['SET VARIABLE IVRS_STARTED "1"', "GET VARIABLE IVRS_HELPDESK_DIAL"]
    assert 'EXEC StopMixMonitor ""' in commands  # no AMI in a classic script: AGI fallback
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


async def test_a_hangup_mid_call_sends_sighup_and_the_process_ends_cleanly(
    agi_env: dict[str, str], make_trucker: Callable[..., Any], db: Any
) -> None:
    trucker: Trucker = await make_trucker()

    def during_the_password(command: Any) -> bool:
        return command.prompt_id == "login.password"

    record = await classic_call(
        agi_env, trucker.bundle_keys(), totp=trucker.code, hangup_at=during_the_password
    )
    assert record.hung_up and record.sighups == 1
    assert record.exit_code == 0  # SIGHUP is handled: Python's default would kill it (-1)
    assert not any("HANGUP" in line for e in record.exchanges for line in e.reply)
    after = [e for e in record.exchanges if e.reply and e.reply[0].startswith("511")]
    assert len(after) <= 1  # at most the command under way when the signal came
    logged = await stored_call(db, record.uniqueid)
    assert (logged.outcome, logged.last_stage) == ("caller_hung_up", "login")
    assert await stored_bundles(db) == []


async def test_with_agisighup_no_the_511_replies_end_the_call(
    agi_env: dict[str, str], make_trucker: Callable[..., Any], db: Any
) -> None:
    trucker: Trucker = await make_trucker()
    record = await classic_call(agi_env, f"3 {trucker.account}# !", sighup=False)
    assert record.hung_up and record.sighups == 0 and record.exit_code == 0
    assert any(e.reply[0].startswith("511") for e in record.exchanges if e.reply)
    logged = await stored_call(db, record.uniqueid)
    assert logged.outcome == "caller_hung_up"


async def test_without_a_header_the_script_ends_at_once(agi_env: dict[str, str]) -> None:
    """Asterisk closed the pipe before the header's end: nothing to do, exit 0."""
    process = await asyncio.create_subprocess_exec(
        *SCRIPT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=agi_env
    )
    out, _ = await asyncio.wait_for(process.communicate(b"agi_request: /x\n"), 30)
    assert (process.returncode, out) == (0, b"")


def test_the_classic_header_names_the_script_and_has_no_network_lines() -> None:
    asterisk = SimulatedAsterisk(args=("39023333",))
    header = asterisk.header("127.0.0.1", 4573, script_path="/usr/local/bin/ivrs-agi")
    assert header[0] == "agi_request: /usr/local/bin/ivrs-agi"
    assert not any(line.startswith("agi_network") for line in header)
    assert header[-1] == "agi_arg_1: 39023333"
    fast = asterisk.header("127.0.0.1", 4573)
    assert fast[3:] == header[1:]  # the rest is the FastAGI header's


# --- call logs a classic AGI process could not deliver -------------------------------------


async def classic_call_with_the_backend_down(agi_env: dict[str, str], tmp_path: Path) -> Path:
    """A classic AGI call while the backend is down: the caller hears the spoken error, and the
    process ends leaving its call log in its own spool directory."""
    down = {**agi_env, "IVRS_BACKEND_URL": f"http://127.0.0.1:{await closed_port()}"}
    record = await classic_call(down, "3")
    assert record.exit_code == 0 and "error.service_unavailable" in record.prompt_ids
    left = tmp_path / "spool" / f"classic-{record.uniqueid}"
    assert {p.suffix for p in left.iterdir() if p.name != ".lock"} == {".jsonl"}
    return left


async def a_live_classic_call_spool(tmp_path: Path) -> Spool:
    """The spool of a classic AGI call still going on: its process holds the lock."""
    busy = Spool(tmp_path / "spool" / "classic-1700000000.99")
    busy.open()
    opening = {"uniqueid": "1700000000.99", "hotline": "39023333", "caller_id": None}
    await busy.append([{"op": "open", "call": {**opening, "channel": None, "language": None}}])
    return busy


async def test_the_fastagi_server_delivers_what_classic_agi_processes_left(
    agi_env: dict[str, str], db: Any, tmp_path: Path
) -> None:
    left = await classic_call_with_the_backend_down(agi_env, tmp_path)
    busy = await a_live_classic_call_spool(tmp_path)
    # `ivrs agi` starts on the same spool directory (IVRS_SPOOL_DIR), the backend back.
    server = await start_agi_server(replace(IvrSettings.from_env(agi_env), agi_port=0))
    try:
        for _ in range(100):
            if not left.exists():
                break
            await asyncio.sleep(0.1)
        assert not left.exists()
        logged, events = await stored_events(db, left.name.removeprefix("classic-"))
        assert logged.outcome == "backend_unavailable"
        assert [e.name for e in events if e.kind == "prompt"][-2:] == [
            "error.service_unavailable",
            "call.goodbye",
        ]
        assert busy.pending()  # a call still going on: its spool is left alone
    finally:
        await server.stop()
        await busy.close()


async def test_ivrs_spool_deliver_sends_what_classic_agi_left_and_leaves_live_calls_alone(
    agi_env: dict[str, str], db: Any, tmp_path: Path
) -> None:
    left = await classic_call_with_the_backend_down(agi_env, tmp_path)
    busy = await a_live_classic_call_spool(tmp_path)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "spool", "deliver",
            env=agi_env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
        assert process.returncode == 0 and out.decode().strip().endswith(": 1 call(s)")
        assert not left.exists() and busy.pending()
        logged = await stored_call(db, left.name.removeprefix("classic-"))
        assert logged.outcome == "backend_unavailable"
    finally:
        await busy.close()


async def test_a_classic_spool_with_no_records_yet_is_left_alone(
    backend: RunningBackend, tmp_path: Path
) -> None:
    """A process starting up makes its directory, then locks it: in between it is neither
    locked nor holding anything, and removing it would fail that call."""
    starting = tmp_path / "spool" / "classic-1700000000.42"
    starting.mkdir(parents=True)
    async with BackendClient(backend.url, backend.settings.api_token) as client:
        assert await deliver_left_spools(client, tmp_path / "spool") == 0
    assert starting.is_dir()
