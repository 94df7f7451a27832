"""Calls through a real Asterisk 22: the repository's dialplan, `ivrs agi`, `ivrs backend`."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from backend.database import Database
from backend.models import Bundle, Call
from tests.asterisk.conftest import Stack, Trucker, make_trucker
from tests.asterisk.driver import Ami, Step, place, steps


def login(t: Trucker, code: str = "{totp}") -> list[Step]:
    return steps(
        ("language.menu", "3"),
        ("login.account", t.account + "#"),
        ("login.password", t.password + "#"),
        ("login.token", code + "#"),
    )


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
