"""Key scripts and checks the real-Asterisk tests share: the login, a bundling, how a call
ended (its call log, the hang-up handler's line, Asterisk's log)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from backend.database import Database
from backend.models import Call
from tests.asterisk import driver
from tests.asterisk.driver import Ami, Step, place, steps
from tests.asterisk.stack import Stack, Trucker, make_trucker


def login(t: Trucker, code: str = "{totp}", listen: bool = False) -> list[Step]:
    """Language 3 (English), then the login: the 8-digit account submits itself (no `#`);
    `listen`: each prompt heard out first."""
    keys = [("language.menu", "3"), ("login.account", t.account)]
    keys += [("login.password", t.password + "#"), ("login.token", code + "#")]
    return [Step(prompt, key, listen=listen) for prompt, key in keys]


def bundling(t: Trucker) -> list[Step]:
    """After login: a first vehicle (none used before: its letters), one CCRN, submit."""
    return steps(
        ("vehicle.letters", t.letter_keys),
        ("vehicle.digits", t.number_keys),
        ("vehicle.confirm", "1"),
        ("bundle.ccrn", t.ccrns[0] + "#"),
        ("bundle.more", "2"),  # the CCRN read back with the question
    )


def leave(listen: bool = False) -> list[Step]:
    """After login: `*` at the vehicle (other services), then 9 at the main menu."""
    return [Step("vehicle.letters", "*", listen=listen), Step("menu.main", "9", listen=listen)]


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


async def login_then_leave(
    stack: Stack, ami: Ami, db: Database, extension: str = "39023333", context: str = "ivrs-test"
) -> tuple[Trucker, driver.Call]:
    """A login, each prompt heard out, then the main menu's end of call."""
    t = await make_trucker(db)
    call = await place(ami, extension=extension, context=context, code=t.code)
    await call.run([*login(t, listen=True), *leave(listen=True)])
    await call.wait_prompt("call.goodbye")
    await call.ended()
    assert (await closed_call(db, call.uniqueid)).outcome == "completed"
    await logged_line(stack, f"End MixMonitor Recording {call.channel}")
    return t, call
