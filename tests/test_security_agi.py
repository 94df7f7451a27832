"""The FastAGI server against a hostile peer (docs/security.md, row 5): who may connect, an
ended call's uniqueid, the recording mute on the call's own channel only and always lifted, and
a peer that never replies. The real FastAGI server, backend and simulated Asterisk + AMI."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backend.app import RunningBackend
from backend.database import Database
from backend.models import Call, CallEvent
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import RunningAmi, place_call
from tests.support.ami import ami, ami_server, ivr_with_ami, mutes  # noqa: F401  (fixtures)
from tests.support.console import on_asterisk
from tests.support.stored import stored_call
from tests.support.truckers import MakeTrucker


def ivr_settings(backend: RunningBackend, tmp_path: Path, **more: Any) -> IvrSettings:
    return replace(
        IvrSettings(),
        backend_url=backend.url,
        api_token=backend.settings.api_token,
        backend_timeout=2.0,
        agi_port=0,
        spool_dir=str(tmp_path / "spool"),
        **more,
    )


async def calls(db: Database) -> list[Call]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Call).order_by(Call.id)))


async def events_of(db: Database, call_id: int) -> list[CallEvent]:
    async with db.sessions() as session:
        return list(await session.scalars(select(CallEvent).where(CallEvent.call_id == call_id)))


# --- who may connect --------------------------------------------------------------------------


def test_the_server_listens_on_loopback_unless_told() -> None:
    assert IvrSettings().agi_host == IvrSettings.from_env({}).agi_host == "127.0.0.1"
    peers = IvrSettings.from_env({"IVRS_AGI_ALLOWED_PEERS": "10.0.0.5, 10.0.0.6"})
    assert peers.agi_allowed_peers == ("10.0.0.5", "10.0.0.6")


async def test_a_peer_not_on_the_allow_list_is_refused_before_anything(
    backend: RunningBackend, db: Database, tmp_path: Path
) -> None:
    settings = ivr_settings(backend, tmp_path, agi_allowed_peers=("192.0.2.7",))
    running = await start_agi_server(settings, port=0)
    try:
        assert running.host == "127.0.0.1"
        record = await place_call(running.host, running.port, keys="3 9")
    finally:
        await running.stop(grace=2)
    assert record.exchanges == []  # not one command: the connection was closed
    assert await calls(db) == []  # and no call log
    settings = ivr_settings(backend, tmp_path, agi_allowed_peers=("127.0.0.1",))
    running = await start_agi_server(settings, port=0)
    try:
        record = await place_call(running.host, running.port, keys="3 9")
    finally:
        await running.stop(grace=2)
    assert record.exchanges and len(await calls(db)) == 1


# --- an ended call's uniqueid -----------------------------------------------------------------


async def test_a_call_with_an_ended_calls_uniqueid_gets_a_new_flagged_log(
    ivr: RunningAgi, db: Database, make_trucker: MakeTrucker
) -> None:
    trucker = await make_trucker()
    first = await place_call(ivr.host, ivr.port, keys="3 9", uniqueid="1700000000.42")
    for _ in range(50):  # the call log is delivered in the background
        ended = await stored_call(db, first.uniqueid)
        if ended.ended_at is not None:
            break
        await asyncio.sleep(0.1)
    assert ended.ended_at is not None
    before = len(await events_of(db, ended.id))
    second = await place_call(
        ivr.host,
        ivr.port,
        keys=f"3 {trucker.login_keys()} 9",
        uniqueid="1700000000.42",
        totp=trucker.code,
    )
    assert any(p.startswith("vehicle.") for p in second.prompt_ids)  # logged in: bundling
    for _ in range(50):  # the call log is delivered in the background
        logs = await calls(db)
        if len(logs) == 2 and logs[1].ended_at is not None:
            break
        await asyncio.sleep(0.1)
    old, new = await calls(db)
    assert old.id == ended.id and len(await events_of(db, old.id)) == before  # untouched
    assert new.uniqueid.startswith("1700000000.42~reused-")
    names = [e.name for e in await events_of(db, new.id)]
    assert "uniqueid_reused" in names and "login" in " ".join(names)


# --- the recording mute -----------------------------------------------------------------------


async def test_a_peer_claiming_another_calls_channel_mutes_nothing_of_it(
    ivr_with_ami: RunningAgi,  # noqa: F811
    ami_server: RunningAmi,  # noqa: F811
    make_trucker: MakeTrucker,
) -> None:
    trucker = await make_trucker()
    victim = "PJSIP/victim-0000001a"
    async with on_asterisk(ami_server, victim):
        # A FastAGI peer that is not that call says it is on the victim's channel, and hangs up
        # while the password is keyed.
        await place_call(
            ivr_with_ami.host,
            ivr_with_ami.port,
            keys=f"3 {trucker.account}# 12!",
            channel=victim,
            uniqueid="1700000099.9",
        )
    assert [m for m in mutes(ami_server) if m[0] == victim] == []


async def test_the_mute_is_lifted_after_a_hang_up_too(
    ivr_with_ami: RunningAgi,  # noqa: F811
    ami_server: RunningAmi,  # noqa: F811
    make_trucker: MakeTrucker,
) -> None:
    trucker = await make_trucker()
    channel = "PJSIP/carrier-0000002a"
    await place_call(
        ivr_with_ami.host,
        ivr_with_ami.port,
        keys=f"3 {trucker.account}# 12!",  # hangs up while keying the password
        channel=channel,
        channels=ami_server.channels,
    )
    for _ in range(50):
        if len(mutes(ami_server)) == 2:
            break
        await asyncio.sleep(0.05)
    assert mutes(ami_server) == [(channel, "1"), (channel, "0")]


# --- a peer that never replies ----------------------------------------------------------------


async def connect_as_asterisk(
    running: RunningAgi, peer: str, uniqueid: str, caller_id: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the server that has sent a call's AGI header, as Asterisk would."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    header = {
        "agi_network": "yes",
        "agi_network_script": "ivrs",
        "agi_request": "agi://127.0.0.1/ivrs",
        "agi_channel": f"PJSIP/{peer}-00000001",
        "agi_uniqueid": uniqueid,
        "agi_callerid": caller_id,
        "agi_arg_1": "39023333",
    }
    writer.write("".join(f"{k}: {v}\n" for k, v in header.items()).encode() + b"\n")
    await writer.drain()
    return reader, writer


async def test_a_peer_slow_but_within_the_reply_timeout_is_not_given_up(
    backend: RunningBackend, tmp_path: Path
) -> None:
    """The server's look for unanswered commands gives up on a command, not on a call: each
    answer within the timeout keeps the call going, however long the call."""
    running = await start_agi_server(
        ivr_settings(backend, tmp_path, agi_reply_timeout_s=0.5), port=0
    )
    try:
        reader, writer = await connect_as_asterisk(running, "slow", "1700000000.78", "91234568")
        for _ in range(3):  # 3 answers each 0.35 s late: 1.05 s in all, twice the timeout
            assert await asyncio.wait_for(reader.readline(), 5)
            await asyncio.sleep(0.35)
            writer.write(b"200 result=0\n")
            await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5)  # a fourth command: still live
        writer.close()
    finally:
        await running.stop(grace=2)


async def test_a_peer_that_never_replies_is_taken_for_hung_up(
    backend: RunningBackend, db: Database, tmp_path: Path
) -> None:
    running = await start_agi_server(
        ivr_settings(backend, tmp_path, agi_reply_timeout_s=0.5), port=0
    )
    try:
        reader, writer = await connect_as_asterisk(running, "silent", "1700000000.77", "91234567")
        first = await asyncio.wait_for(reader.readline(), 5)  # the first command ...
        assert first  # ... never answered: the server gives up and closes the connection
        async with asyncio.timeout(10):
            while await reader.read(4096):
                pass
        writer.close()
    finally:
        await running.stop(grace=2)
    for _ in range(50):
        call = await stored_call(db, "1700000000.77")
        if call.ended_at is not None:
            break
        await asyncio.sleep(0.1)
    assert call.ended_at is not None and call.outcome == "caller_hung_up"
