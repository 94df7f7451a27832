"""Calls through a real Asterisk 22: the repository's dialplan, `ivrs agi`, `ivrs backend`."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select

from backend.database import Database
from backend.models import Bundle, Call
from tests.asterisk import driver
from tests.asterisk.conftest import Stack, Trucker, make_trucker
from tests.asterisk.driver import Ami, Step, place, steps


def login(t: Trucker, code: str = "{totp}", listen: bool = False) -> list[Step]:
    """Language 3 (English), then the login; `listen`: each prompt heard out first."""
    keys = [("language.menu", "3"), ("login.account", t.account + "#")]
    keys += [("login.password", t.password + "#"), ("login.token", code + "#")]
    return [Step(prompt, key, listen=listen) for prompt, key in keys]


def bundling(t: Trucker) -> list[Step]:
    return (
        steps(
            ("menu.main", "1"),
            ("vehicle.letters", t.letter_keys),
            ("vehicle.digits", t.number_keys),
            ("vehicle.confirm", "1"),
            ("bundle.ccrn", t.ccrns[0] + "#"),
            ("bundle.ccrn_confirm", "1"),
            ("bundle.more", "2"),
        )
        + [Step("bundle.submitted", "2", at="ivrs/bundle/submitted-3")]
        + steps(
            ("menu.main", "9"),
        )
    )


async def stored_call(db: Database, uniqueid: str) -> Call | None:
    async with db.sessions() as session:
        return await session.scalar(select(Call).where(Call.uniqueid == uniqueid))


async def closed_call(db: Database, uniqueid: str, timeout: float = 15) -> Call:
    """The call log once closed (the server closes it as the call ends)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        call = await stored_call(db, uniqueid)
        if call is not None and call.outcome is not None:
            return call
        assert asyncio.get_running_loop().time() < deadline, f"call {uniqueid} not closed"
        await asyncio.sleep(0.2)


async def test_a_full_bundling_call_stores_the_bundle(stack: Stack, ami: Ami, db: Database) -> None:
    t = await make_trucker(db)
    call = await place(ami, code=t.code)
    await call.run([*login(t), *bundling(t)])
    await call.wait_prompt("call.goodbye")
    await call.ended()
    logged = await closed_call(db, call.uniqueid)
    assert logged.outcome == "completed"
    async with db.sessions() as session:
        [bundle] = list(await session.scalars(select(Bundle).where(Bundle.call_id == logged.id)))
    assert bundle.vehicle_mark == t.vehicle
    commands = call.commands()
    assert any(c.startswith("SAY DIGITS") for c in commands)  # the reference, read back
    assert any(c.startswith("SAY DATETIME") for c in commands)  # the crossing time
    # The hang-up handler reached the backend and Asterisk parsed its step: the reply (the
    # call log with its events, over 4,096 bytes) is not asked for.
    [reported] = await handler_lines(stack, call)
    assert reported.endswith('reported, reply ""'), reported
    assert "Can't find trailing parenthesis" not in stack.asterisk.log()


async def handler_lines(stack: Stack, call: driver.Call, timeout: float = 10) -> list[str]:
    """The hang-up handler's `reported` lines for the call, once it has run."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        lines = [line for line in call.verbose_of(stack.asterisk.log()) if "hangup cause" in line]
        if lines:
            await asyncio.sleep(0.5)  # a second run would show by now
            return [
                line for line in call.verbose_of(stack.asterisk.log()) if "hangup cause" in line
            ]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the hang-up handler did not report {call.uniqueid}")


async def logged_line(stack: Stack, text: str, timeout: float = 10) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for line in stack.asterisk.log().splitlines():
            if text in line:
                return line
        await asyncio.sleep(0.2)
    raise AssertionError(f"not in Asterisk's log: {text}")


async def test_fastagi_down_the_caller_hears_the_spoken_fallback(stack: Stack, ami: Ami) -> None:
    call = await place(ami, extension="unreachable")
    await call.ended()
    log = stack.asterisk.log()
    [after] = [line for line in call.verbose_of(log) if "AGISTATUS" in line]
    assert after.endswith("AGISTATUS=FAILURE IVRS_STARTED= IVRS_TRANSFER=")
    played = re.findall(rf"<{re.escape(call.channel)}> Playing '([^.']+)", log)
    assert played == ["ivrs/error/service_unavailable", "ivrs/call/goodbye"]
    [reported] = await handler_lines(stack, call)
    assert "call_unknown" in reported  # no call log: the server was never reached


async def test_a_stuck_caller_is_transferred_to_the_helpdesk(
    stack: Stack, ami: Ami, db: Database
) -> None:
    call = await place(ami)
    await call.run(steps(("language.menu", "7"), ("error.invalid", "7"), ("error.invalid", "7")))
    _, answered = await ami.wait_for(
        lambda e: e.get("Event") == "DialEnd" and call.mine(e) and e.get("DialStatus") == "ANSWER",
        call.start,
    )
    assert answered["DestChannel"].startswith("Local/helpdesk@ivrs-test-standins")
    helpdesk = answered["DestChannel"].removesuffix(";1") + ";2"  # the half that answered
    await logged_line(stack, f"ivrs-test: helpdesk answered {helpdesk}")
    logged = await closed_call(db, call.uniqueid)
    assert logged.outcome == "transferred_to_helpdesk"
    await call.hangup_caller()
    await call.ended()


async def test_the_service_token_is_in_no_asterisk_log_at_any_verbose_level(
    stack: Stack, ami: Ami, db: Database
) -> None:
    stack.asterisk.cli("dialplan reload")  # globals are logged at each load
    call = await place(ami)
    await call.wait_prompt("language.menu")
    await call.hangup_caller()
    await call.ended()
    [reported] = await handler_lines(stack, call)
    assert "unauthorized" not in reported  # the handler did send the token
    assert (await closed_call(db, call.uniqueid)).outcome == "caller_hung_up"
    token = stack.settings.api_token
    everything = stack.asterisk.log("everything")  # verbose 10
    assert "Setting global variable 'IVRS_BACKEND_URL'" in everything
    for name in ("full", "everything", "messages", "stdout"):
        assert token not in stack.asterisk.log(name), f"the token is in Asterisk's {name} log"
