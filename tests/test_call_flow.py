"""End to end: simulated Asterisk → real FastAGI server over TCP → real backend over HTTP."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace
from typing import Any

import pytest

from formats import luhn_check_digit
from ivr.server import start_agi_server
from ivr.settings import IvrSettings
from simulator import place_call
from tests.support.stored import stored_bundles, stored_call

pytestmark = pytest.mark.asyncio


def said_digits(record: Any) -> list[str]:
    """Digit strings read back: the runs of digit files the IVR streamed (prompts/say.py),
    its pauses between groups left out."""
    names = [[f.rpartition("/")[2] for f in run] for run in record.fragment_runs]
    return ["".join(n for n in run if n != "pause") for run in names]


async def test_returning_trucker_bundles_one_ccrn(make_trucker, phone, db, ivr) -> None:
    trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker)

    ids = record.prompt_ids
    assert ids[:5] == ["language.menu", "welcome", "call.keys", "login.account", "login.password"]
    assert "bundle.submitted" in ids and ids[-1] == "call.goodbye"
    bundles = await stored_bundles(db)
    assert len(bundles) == 1
    assert bundles[0].vehicle_mark == trucker.vehicle
    assert bundles[0].reference in said_digits(record)  # read back digit by digit
    call = await stored_call(db, record.uniqueid)
    assert (call.outcome, call.ended_at is not None) == ("completed", True)
    assert record.language == "en"
    assert call.language == "en"  # chosen after the call log was opened with the default
    assert record.closed_by == "server"


async def test_wrong_password_fails_generically_then_second_try_succeeds(
    make_trucker, phone, db
) -> None:
    trucker = await make_trucker()
    keys = (
        f"3 {trucker.account}# 999999# 123456# "  # wrong password and a made-up code
        f"{trucker.password}# {{totp}}# * 9"  # the account number is kept
    )
    record = await phone(keys, trucker)
    ids = record.prompt_ids
    assert ids.count("login.failed") == 1
    assert ids[ids.index("login.failed") + 1] == "login.password"
    assert ids.count("login.account") == 1
    assert "menu.main" in ids
    assert "login.locked" not in ids and "login.token_expired" not in ids
    call = await stored_call(db, record.uniqueid)
    assert call.outcome == "completed"


async def test_ccrn_with_bad_check_digit_is_refused_before_any_backend_call(
    make_trucker, phone, db, ivr
) -> None:
    trucker = await make_trucker()
    good = trucker.ccrns[0]
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert luhn_check_digit(bad[:-1]) != bad[-1]
    keys = f"3 {trucker.login_keys()} {trucker.vehicle_keys} 1 {bad}# {good}# 2"
    record = await phone(keys, trucker)
    ids = record.prompt_ids
    assert ids.count("bundle.ccrn_invalid") == 1
    # The bad number was never read back nor sent: the next prompt asks again at once.
    assert ids[ids.index("bundle.ccrn_invalid") + 1] == "bundle.ccrn"
    requests = ivr.app.backend.requests
    assert not any(bad in r for r in requests)
    assert any(good in r for r in requests)
    assert len(await stored_bundles(db)) == 1


async def test_backend_stopped_mid_call_says_service_unavailable_and_ends_cleanly(
    make_trucker, phone, backend, db
) -> None:
    trucker = await make_trucker()

    async def stop_backend_at_ccrn(command: Any) -> None:
        if command.prompt_id == "bundle.ccrn" and backend.app is not None:
            await backend.stop()

    record = await phone(trucker.bundle_keys(), trucker, on_command=stop_backend_at_ccrn)
    ids = record.prompt_ids
    assert ids[-2:] == ["error.service_unavailable", "call.goodbye"]
    assert "bundle.submitted" not in ids
    assert record.closed_by == "server" and not record.hung_up


async def test_a_caller_who_knows_the_way_barges_in_on_every_prompt(
    make_trucker, phone, db
) -> None:
    trucker = await make_trucker()
    # The 8-digit account number submits itself: a `#` after it would be typed, not barged in.
    typed = trucker.bundle_keys().replace(f"{trucker.account}#", trucker.account)
    keys = " ".join("^" + token for token in typed.split())
    record = await phone(keys, trucker)
    interrupted = [h for h in record.heard if h.kind == "prompt" and h.interrupted_by]
    assert len(interrupted) >= 9  # every prompt that asks for something was cut short
    # The only wait: the receipt's, for a caller who has no more to do (then goodbye).
    waits = [e.command for e in record.exchanges if e.command.startswith("WAIT FOR DIGIT 8000")]
    assert len(waits) == 1 and record.prompt_ids[-2] == "bundle.next"
    assert len(await stored_bundles(db)) == 1
    assert record.prompt_ids[-1] == "call.goodbye"


async def test_a_hanging_backend_is_heard_as_please_hold_never_as_silence(tmp_path) -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    hanging = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = hanging.sockets[0].getsockname()[1]
    settings = replace(
        IvrSettings(),
        backend_url=f"http://127.0.0.1:{port}",
        backend_timeout=6.0,  # past two hold periods
        spool_dir=str(tmp_path / "spool"),
    )
    agi = await start_agi_server(settings, port=0)
    try:
        record = await place_call(agi.host, agi.port, keys="3")
    finally:
        await agi.stop(grace=5)
        hanging.close()
        for writer in held:
            writer.close()
    ids = record.prompt_ids
    assert ids.count("call.hold") >= 2 and ids[ids.index("call.hold") - 1] == "welcome"
    assert ids[-2:] == ["error.service_unavailable", "call.goodbye"]


async def test_in_a_burst_the_language_menu_plays_without_waiting_for_the_opening(
    tmp_path,
) -> None:
    """A known caller's language is waited for up to 1 s; with half the backend's connections'
    worth of requests pending (a burst), the menu plays at once instead of after a silence."""
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    hanging = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = hanging.sockets[0].getsockname()[1]
    settings = replace(
        IvrSettings(),
        backend_url=f"http://127.0.0.1:{port}",
        backend_timeout=1.5,  # past the 1 s wait; the ends then go to the spool soon
        spool_dir=str(tmp_path / "spool"),
    )
    agi = await start_agi_server(settings, port=0)
    waits: list[float] = []

    async def call(n: int) -> None:
        started = asyncio.get_running_loop().time()

        def at_menu(command: Any) -> bool:
            if command.prompt_id == "language.menu":
                waits.append(asyncio.get_running_loop().time() - started)
                return True  # hang up: the wait is what is measured
            return False

        await place_call(agi.host, agi.port, keys="3", caller_id=f"9{n:07d}", hangup_at=at_menu)

    # The server runs in the test's process, beside the garbage of the tests before it: a full
    # pass of the garbage collector over that took half a second, a wait of every call.
    gc.collect()
    gc.disable()
    try:
        await call(0)  # alone: the backend is not busy, its answer is waited for
        alone = waits.pop()
        await asyncio.gather(*(call(n) for n in range(1, 81)))
    finally:
        gc.enable()
        await agi.stop(grace=5)
        hanging.close()
        for writer in held:
            writer.close()
    assert alone >= 0.9
    assert len(waits) == 80 and sum(w < 0.5 for w in waits) >= 30, sorted(waits)
