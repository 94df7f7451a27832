"""Asterisk restarted under a running `ivrs agi`: the server logs in to AMI again by itself, and
the next call's recording is muted over AMI again."""

from __future__ import annotations

import asyncio

from backend.database import Database
from tests.asterisk.calls import login_then_leave
from tests.asterisk.driver import Ami
from tests.asterisk.instance import TESTER
from tests.asterisk.stack import Stack


async def logins(stack: Stack) -> int:
    return max(
        (e.get("logins", 0) for e in stack.agi.events() if e.get("event") == "ami_logged_in"),
        default=0,
    )


async def test_ivrs_agi_logs_in_to_ami_again_after_asterisk_restarts(
    stack: Stack, db: Database
) -> None:
    before = await logins(stack)
    assert before >= 1
    stack.asterisk.stop()
    stack.asterisk.start()
    for _ in range(100):  # it retries every second
        if await logins(stack) > before:
            break
        await asyncio.sleep(0.2)
    events = [e["event"] for e in stack.agi.events()]
    assert "ami_connection_lost" in events and await logins(stack) == before + 1
    ami = Ami()
    await ami.connect(stack.asterisk.ports.ami, TESTER, stack.asterisk.tester_secret)
    try:
        _, call = await login_then_leave(stack, ami, db)
    finally:
        await ami.close()
    muted = [
        e
        for e in stack.agi.events()
        if e.get("call") == call.uniqueid and e["event"] == "recording_muted"
    ]
    assert [e["by"] for e in muted] == ["ami"]
