"""Calls through a real Asterisk 22: the repository's dialplan, `ivrs agi`, `ivrs backend`."""

from __future__ import annotations

import re
from datetime import UTC

from sqlalchemy import select

from backend.database import Database
from backend.models import Bundle
from ivr.settings import IvrSettings
from prompts.say import slot_files
from tests.asterisk.calls import bundling, closed_call, handler_lines, logged_line, login
from tests.asterisk.driver import Ami, Step, place, steps
from tests.asterisk.stack import Stack, make_trucker


def streamed_between(commands: list[str], first: str, last: str) -> list[str]:
    """The files of the STREAM FILEs after the one of `first` and before the one of `last`."""
    files = [c.split(" ")[2] for c in commands if c.startswith("STREAM FILE ")]
    return files[files.index(first) + 1 : files.index(last)]


async def test_a_full_bundling_call_stores_the_bundle(stack: Stack, ami: Ami, db: Database) -> None:
    t = await make_trucker(db)
    call = await place(ami, code=t.code)
    # The receipt heard out, then 0 at the question after it: heard again; then silence ends
    # the call.
    again = Step("bundle.next", "0")
    await call.run([*login(t), *bundling(t), again])
    await call.wait_prompt("call.goodbye")
    await call.ended()
    logged = await closed_call(db, call.uniqueid)
    assert logged.outcome == "completed"
    async with db.sessions() as session:
        [bundle] = list(await session.scalars(select(Bundle).where(Bundle.call_id == logged.id)))
    assert bundle.vehicle_mark == t.vehicle
    # The reference read back and the crossing time, in the server's own English fragments.
    commands = call.commands()
    reference = streamed_between(commands, "ivrs/bundle/submitted", "ivrs/bundle/submitted-2")
    assert reference == slot_files("digits", bundle.reference, "en")
    crossing = bundle.earliest_crossing
    crossing = crossing if crossing.tzinfo else crossing.replace(tzinfo=UTC)
    heard = streamed_between(commands, "ivrs/bundle/submitted-2", "ivrs/bundle/next")
    assert heard == slot_files("datetime", crossing, "en", IvrSettings().timezone)
    assert not [c for c in commands if c.startswith(("SAY DIGITS", "SAY DATETIME"))]
    assert len([c for c in commands if c.startswith("STREAM FILE ivrs/bundle/submitted ")]) == 2
    # The hang-up handler reached the backend and Asterisk parsed its step: the reply (the
    # call log with its events, over 4,096 bytes) is not asked for.
    [reported] = await handler_lines(stack, call)
    assert reported.endswith('reported, reply ""'), reported
    assert "Can't find trailing parenthesis" not in stack.asterisk.log()


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


async def test_a_stuck_caller_is_offered_the_helpdesk_and_transferred(
    stack: Stack, ami: Ami, db: Database
) -> None:
    """Three wrong keys at the language menu; the helpdesk offered; 7 dials it."""
    call = await place(ami)
    await call.run(
        steps(
            ("language.menu", "5"),
            ("error.invalid", "5"),
            ("error.invalid", "5"),
            ("call.helpdesk_offer", "7"),
        )
    )
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


async def test_the_helpdesk_key_at_a_menu_transfers_at_once(
    stack: Stack, ami: Ami, db: Database
) -> None:
    call = await place(ami)
    await call.run(steps(("language.menu", "7")))
    await call.wait_prompt("call.transfer")
    _, answered = await ami.wait_for(
        lambda e: e.get("Event") == "DialEnd" and call.mine(e) and e.get("DialStatus") == "ANSWER",
        call.start,
    )
    assert answered["DestChannel"].startswith("Local/helpdesk@ivrs-test-standins")
    assert (await closed_call(db, call.uniqueid)).outcome == "transferred_to_helpdesk"
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
