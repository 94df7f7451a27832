# ruff: noqa: F811  (the fixtures imported from tests.support.ami are used as arguments)
"""AMI: the simulated manager interface (simulator/ami_server.py) speaks what Asterisk 22 sent in
tests/transcripts 09 and 01; the FastAGI server's long-lived connection (ami_client/) mutes a
call's recording around the password and token code, survives the AMI server restarting, and
falls back to stopping MixMonitor over AGI when AMI is down; `listen_in` originates ChanSpy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ami_client import Ami, AmiError, AmiUnavailable, listen_in
from backend.app import RunningBackend
from cli.main import build_parser
from ivr.server import RunningAgi
from simulator import CallRecord, Command, RunningAmi, place_call, start_ami_server
from tests.support.ami import SECRET, ami, ami_server, ivr_with_ami, mutes  # noqa: F401
from tests.support.servers import ivr_server
from tests.support.stored import stored_bundles
from tests.support.truckers import Trucker

EOL = "\r\n"


# -- the protocol, byte for byte ----------------------------------------------------------


class AmiPeer:
    """A raw AMI client: sends messages as written, reads messages up to their blank line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> AmiPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def banner(self) -> str:
        return (await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 2)).decode()

    async def send(self, *lines: str) -> None:
        self.writer.write((EOL.join(lines) + EOL + EOL).encode())
        await self.writer.drain()

    async def message(self) -> str:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 2)
        return raw.decode()


async def test_the_simulated_ami_answers_as_asterisk_22_did(ami_server: RunningAmi) -> None:
    """tests/transcripts 09: login, CoreShowChannels, MixMonitorMute, an unknown channel, Logoff."""
    held = asyncio.Event()

    async def hold(command: Command) -> None:
        if command.name == "VERBOSE":
            await held.wait()  # the call stays live while the AMI peer looks at it

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        writer.write(b'VERBOSE "hold" 1\n')
        await reader.readline()
        writer.close()

    live = asyncio.Event()
    ami_server.channels.watchers.append(lambda what, call: live.set())
    agi = await asyncio.start_server(serve, "127.0.0.1", 0)
    options = {"channel": "Local/mute@ivrs-test-00000002;2", "uniqueid": "1795420978.5"}
    call = asyncio.create_task(
        place_call(
            "127.0.0.1",
            agi.sockets[0].getsockname()[1],
            channels=ami_server.channels,
            on_command=hold,
            **options,
        )
    )
    await live.wait()
    peer = await AmiPeer.connect(ami_server.port)
    assert await peer.banner() == "Asterisk Call Manager/11.0.0\r\n"
    await peer.send(
        "Action: Login", "Username: ivrs", f"Secret: {SECRET}", "Events: off", "ActionID: 1"
    )
    assert await peer.message() == (
        "Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
    )
    await peer.send("Action: CoreShowChannels", "ActionID: 2")
    assert await peer.message() == (
        "Response: Success\r\nActionID: 2\r\nEventList: start\r\n"
        "Message: Channels will follow\r\n\r\n"
    )
    listed = await peer.message()
    assert listed.startswith(
        "Event: CoreShowChannel\r\nActionID: 2\r\nChannel: Local/mute@ivrs-test-00000002;2\r\n"
    )
    fields = dict(line.split(": ", 1) for line in listed.removesuffix(EOL + EOL).split(EOL))
    assert fields["Uniqueid"] == "1795420978.5" and fields["Application"] == "AGI"
    assert list(fields)[-4:] == ["Application", "ApplicationData", "Duration", "BridgeId"]
    assert await peer.message() == (
        "Event: CoreShowChannelsComplete\r\nActionID: 2\r\nEventList: Complete\r\n"
        "ListItems: 1\r\n\r\n"
    )
    mute = ("Channel: Local/mute@ivrs-test-00000002;2", "Direction: both")
    await peer.send("Action: MixMonitorMute", *mute, "State: 1", "ActionID: 3")
    assert await peer.message() == "Response: Success\r\nActionID: 3\r\n\r\n"
    assert ami_server.channels.get(mute[0][9:]).channel.muted == {"read", "write"}  # type: ignore[union-attr]
    await peer.send("Action: MixMonitorMute", *mute, "State: 0", "ActionID: 4")
    assert await peer.message() == "Response: Success\r\nActionID: 4\r\n\r\n"
    await peer.send(
        "Action: MixMonitorMute",
        "Channel: Local/none-0000;2",
        "Direction: both",
        "State: 1",
        "ActionID: 5",
    )
    assert await peer.message() == (
        "Response: Error\r\nActionID: 5\r\nMessage: No such channel\r\n\r\n"
    )
    await peer.send("Action: Logoff", "ActionID: 9")
    assert await peer.message() == (
        "Response: Goodbye\r\nActionID: 9\r\nMessage: Thanks for all the fish.\r\n\r\n"
    )
    assert await peer.reader.read() == b""  # Asterisk ends the session after Goodbye
    held.set()
    await call
    agi.close()
    assert all("Secret" not in action for action in ami_server.actions)
    assert ami_server.actions[0] == {
        "Action": "Login",
        "Username": "ivrs",
        "Events": "off",
        "ActionID": "1",
    }


async def test_a_wrong_secret_is_refused_and_the_session_ends(ami_server: RunningAmi) -> None:
    peer = await AmiPeer.connect(ami_server.port)
    await peer.banner()
    await peer.send("Action: CoreShowChannels", "ActionID: 1")
    assert (
        await peer.message()
        == "Response: Error\r\nActionID: 1\r\nMessage: Permission denied\r\n\r\n"
    )
    await peer.send("Action: Login", "Username: ivrs", "Secret: wrong", "ActionID: 2")
    assert await peer.message() == (
        "Response: Error\r\nActionID: 2\r\nMessage: Authentication failed\r\n\r\n"
    )
    assert await peer.reader.read() == b""
    assert "wrong" not in repr(ami_server.actions)


async def test_actions_need_the_users_write_classes() -> None:
    """manager.conf's `ivrs` user may mute and list, and originate; never the System app."""
    server = await start_ami_server(secret=SECRET, write=frozenset({"call"}))
    try:
        peer = await AmiPeer.connect(server.port)
        await peer.banner()
        await peer.send("Action: Login", "Username: ivrs", f"Secret: {SECRET}", "ActionID: 1")
        await peer.message()
        await peer.send("Action: CoreShowChannels", "ActionID: 2")
        assert "Message: Permission denied" in await peer.message()
        await peer.send("Action: NoSuchThing", "ActionID: 3")
        assert "Message: Invalid/unknown command: NoSuchThing. Use Action: ListCommands" in (
            await peer.message()
        )
    finally:
        await server.stop()
    server = await start_ami_server(secret=SECRET)  # write = call,reporting,originate
    try:
        peer = await AmiPeer.connect(server.port)
        await peer.banner()
        await peer.send("Action: Login", "Username: ivrs", f"Secret: {SECRET}", "ActionID: 1")
        await peer.message()
        system = ("Channel: Local/1@x", "Application: System", "Data: id", "Async: true")
        await peer.send("Action: Originate", *system, "ActionID: 2")
        assert "requires the additional System privilege" in await peer.message()
        assert server.originated == []
    finally:
        await server.stop()


# -- the FastAGI server mutes the recording -----------------------------------------------


async def test_the_recording_is_muted_by_ami_from_the_password_to_the_token_code(
    ivr_with_ami: RunningAgi,
    ami_server: RunningAmi,
    make_trucker: Callable[..., Any],
    db: Any,
) -> None:
    trucker: Trucker = await make_trucker()
    mutes_at: dict[str, list[tuple[str, str]]] = {}

    def watch(command: Command) -> None:
        watched = ("login.account", "login.password", "login.token", "vehicle.other_services")
        if command.prompt_id in watched:
            mutes_at.setdefault(command.prompt_id, mutes(ami_server))

    channel = "PJSIP/carrier-0000002a"
    record = await place_call(
        ivr_with_ami.host,
        ivr_with_ami.port,
        keys=trucker.bundle_keys(),
        totp=trucker.code,
        channel=channel,
        channels=ami_server.channels,
        on_command=watch,
    )
    assert "bundle.submitted" in record.prompt_ids
    assert len(await stored_bundles(db)) == 1
    assert mutes_at["login.account"] == []
    assert mutes_at["login.password"] == [(channel, "1")]  # before the password prompt plays
    assert mutes_at["login.token"] == [(channel, "1")]  # still muted while the code is keyed
    # Lifted after the code, before the first prompt after login.
    assert mutes_at["vehicle.other_services"] == [(channel, "1"), (channel, "0")]
    assert mutes(ami_server) == [(channel, "1"), (channel, "0")]
    # Over AMI, not AGI: the recording was never stopped.
    assert not any("MixMonitor" in e.command for e in record.exchanges)
    assert re.fullmatch(rf"{trucker.password}#\d{{6}}#", keys(record, muted=True))
    assert keys(record, muted=False).startswith(f"3{trucker.account}")  # the rest is heard
    assert all(s.recorded_to == record.recording for s in record.timeline)


def keys(record: CallRecord, **span: Any) -> str:
    """The keys typed in spans with these attributes (muted=True, recorded_to=None...)."""
    return "".join(
        s.keys
        for s in record.timeline
        if s.kind == "keys" and all(getattr(s, k) == v for k, v in span.items())
    )


async def test_the_ami_connection_survives_the_ami_server_restarting(
    ivr_with_ami: RunningAgi,
    ami_server: RunningAmi,
    ami: Ami,
    make_trucker: Callable[..., Any],
) -> None:
    await ami_server.stop()
    await asyncio.wait_for(ami.down.wait(), 5)
    await ami_server.start()  # the same port
    assert await ami.wait_ready(5)
    assert ami.logins == 2
    trucker: Trucker = await make_trucker()
    record = await place_call(
        ivr_with_ami.host,
        ivr_with_ami.port,
        keys=trucker.bundle_keys(),
        totp=trucker.code,
        channels=ami_server.channels,
    )
    assert "bundle.submitted" in record.prompt_ids
    name = f"PJSIP/hotline-{int(record.uniqueid.split('.')[1]):08x}"
    assert mutes(ami_server) == [(name, "1"), (name, "0")]


async def test_with_ami_down_the_recording_is_stopped_over_agi_and_the_call_goes_on(
    backend: RunningBackend,
    tmp_path: Path,
    ami_server: RunningAmi,
    make_trucker: Callable[..., Any],
    db: Any,
) -> None:
    down = Ami("127.0.0.1", ami_server.port, "ivrs", SECRET)
    await ami_server.stop()  # nothing listens there now
    await down.start()
    running = await ivr_server(backend, tmp_path, down)
    try:
        trucker: Trucker = await make_trucker()
        record = await place_call(
            running.host, running.port, keys=trucker.bundle_keys(), totp=trucker.code
        )
    finally:
        await running.stop(grace=5)
        await down.close()
    assert "bundle.submitted" in record.prompt_ids
    assert len(await stored_bundles(db)) == 1
    file = record.recording
    assert file is not None
    exchanges = [
        (e.command, e.reply)
        for e in record.exchanges
        if "MIXMONITOR" in e.command or "MixMonitor" in e.command
    ]
    assert exchanges == [
        ("GET VARIABLE MIXMONITOR_FILENAME", [f"200 result=1 ({file})"]),
        ('EXEC StopMixMonitor ""', ["200 result=0"]),
        (f'EXEC MixMonitor "{file},a"', ["200 result=0"]),
    ]
    commands = [e.command for e in record.exchanges]
    stop, start = (
        commands.index('EXEC StopMixMonitor ""'),
        commands.index(f'EXEC MixMonitor "{file},a"'),
    )
    password = next(i for i, c in enumerate(commands) if "ivrs/login/password" in c)
    token = max(i for i, c in enumerate(commands) if c.startswith("GET DATA") and i < start)
    assert stop < password < token < start
    assert re.fullmatch(rf"{trucker.password}#\d{{6}}#", keys(record, recorded_to=None))
    assert not keys(record, muted=True)


async def test_without_ami_settings_the_server_mutes_over_agi(
    phone: Callable[..., Any], make_trucker: Callable[..., Any]
) -> None:
    trucker: Trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker)
    assert "bundle.submitted" in record.prompt_ids
    assert sum(e.command.startswith("EXEC StopMixMonitor") for e in record.exchanges) == 1


async def test_a_call_that_is_not_recorded_is_left_alone(
    phone: Callable[..., Any], make_trucker: Callable[..., Any]
) -> None:
    trucker: Trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker, mixmonitor=False)
    assert "bundle.submitted" in record.prompt_ids
    assert not any("MixMonitor" in e.command for e in record.exchanges)
    assert "GET VARIABLE MIXMONITOR_FILENAME" in [e.command for e in record.exchanges]


# -- the connection's other uses ------------------------------------------------------------


async def test_live_channels_and_mute_errors(ami: Ami, ami_server: RunningAmi) -> None:
    seen: list[list[dict[str, str]]] = []

    async def look(command: Command) -> None:
        if command.name == "VERBOSE":
            seen.append(await ami.live_channels())

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        writer.write(b"ANSWER\n")
        await reader.readline()
        writer.write(b'VERBOSE "x" 1\n')
        await reader.readline()
        writer.close()

    agi = await asyncio.start_server(serve, "127.0.0.1", 0)
    record = await place_call(
        "127.0.0.1",
        agi.sockets[0].getsockname()[1],
        channels=ami_server.channels,
        on_command=look,
        caller_id="85291234567",
    )
    agi.close()
    [[listed]] = seen
    assert listed["Uniqueid"] == record.uniqueid and listed["ChannelState"] == "6"
    assert listed["CallerIDNum"] == "85291234567"
    assert listed["ApplicationData"].startswith("agi://127.0.0.1:")
    assert await ami.live_channels() == []
    with pytest.raises(AmiError, match="No such channel"):
        await ami.mute_recording(listed["Channel"], True)


async def test_an_action_while_disconnected_fails_at_once(ami_server: RunningAmi) -> None:
    ami = Ami("127.0.0.1", ami_server.port, "ivrs", "not-the-secret")
    await ami.start()
    try:
        assert not await ami.wait_ready(0.5)  # refused: never logged in
        with pytest.raises(AmiUnavailable):
            await ami.mute_recording("PJSIP/x", True)
    finally:
        await ami.close()


async def test_listen_in_originates_a_quiet_listen_only_chanspy(
    ami: Ami, ami_server: RunningAmi
) -> None:
    reply = await listen_in(ami, "PJSIP/carrier-0000002a", "201", "supervisors")
    assert reply.response == "Success" and reply.message == "Originate successfully queued"
    originate = ami_server.actions[-1]
    assert {k: originate[k] for k in ("Action", "Channel", "Application", "Data", "Async")} == {
        "Action": "Originate",
        "Channel": "Local/201@supervisors",
        "Application": "ChanSpy",
        "Data": "PJSIP/carrier-0000002a,qES",  # no w, W or B: the caller never hears them
        "Async": "true",
    }


# -- `ivrs asterisk test-call` ---------------------------------------------------------------


async def ivrs_asterisk(*argv: str) -> int:
    """`ivrs asterisk ...` as the console script runs it (synchronous: in a thread)."""
    args = build_parser().parse_args(["asterisk", *argv])
    return int(await asyncio.to_thread(args.func, args))


async def test_test_call_originates_a_local_call_that_bundles_through_the_ivr(
    ivr: RunningAgi,
    make_trucker: Callable[..., Any],
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = await start_ami_server(secret=SECRET, agi=(ivr.host, ivr.port))
    trucker: Trucker = await make_trucker()
    monkeypatch.setenv("IVRS_AMI_SECRET", SECRET)
    keys = trucker.bundle_keys().replace(" ", "W")  # SendDTMF pauses between entries
    try:
        code = await ivrs_asterisk(
            "test-call",
            "--port", str(server.port),
            "--keys", keys,
            "--totp-seed", trucker.seed,
            "--caller-id", '"Chan Tai Man" <85291234567>',
            "--timeout", "30",
        )  # fmt: skip
        [placed] = server.originated
        record = await placed
    finally:
        await server.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert record is not None and "bundle.submitted" in record.prompt_ids
    assert len(await stored_bundles(db)) == 1
    originate = next(a for a in server.actions if a["Action"] == "Originate")
    assert originate["Channel"] == "Local/39023333@ivrs-test/n"
    assert (originate["Context"], originate["Exten"]) == ("ivrs-test-caller", "keys")
    assert originate["Variable"].startswith(f"IVRS_TEST_KEYS=3W{trucker.account}W")
    lines = [line for line in out.splitlines() if line.startswith("-- ")]  # not the logs
    assert lines[0].startswith("-- originating Local/39023333@ivrs-test/n -> keys@ivrs-test-caller")
    assert lines[1].startswith("-- answered: Local/39023333@ivrs-test-00000001;1")
    assert lines[2] == (
        f"-- hung up: Local/39023333@ivrs-test-00000001;2 (uniqueid {record.uniqueid}), "
        "cause 16 (Normal Clearing)"
    )
    assert (
        lines[-1]
        == f"-- recording of the IVR half: /var/spool/asterisk/monitor/{record.uniqueid}.wav"
    )
    assert trucker.password not in out  # the keys are never printed
    assert record.variables["IVRS_TEST_KEYS"].startswith("3W")  # Local copies ;1's variables


async def test_test_call_reports_a_refused_login_and_an_unknown_hotline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ami_server: RunningAmi
) -> None:
    monkeypatch.setenv("IVRS_AMI_SECRET", "wrong")
    assert await ivrs_asterisk("test-call", "--port", str(ami_server.port)) == 1
    assert "AMI login as 'ivrs' refused: Authentication failed." in capsys.readouterr().err
    monkeypatch.setenv("IVRS_AMI_SECRET", SECRET)
    code = await ivrs_asterisk("test-call", "--port", str(ami_server.port), "--timeout", "5")
    assert code == 1  # no FastAGI server behind this AMI: the Local channel fails
    assert "-- failed: reason 0" in capsys.readouterr().out


async def test_the_sample_manager_conf_user_may_do_all_the_ivr_asks() -> None:
    """dialplan/manager.conf's least-privilege `ivrs` user, as the simulated AMI enforces
    manager.c's write classes: mute, list, listen in; nothing is refused."""
    conf = (Path(__file__).parent.parent / "dialplan" / "manager.conf").read_text()
    section, classes = "", {}
    for line in conf.splitlines():
        line = line.split(";")[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "ivrs" and line.partition("=")[0].strip() in ("read", "write"):
            key, _, value = line.partition("=")
            classes[key.strip()] = frozenset(v.strip() for v in value.split(","))
    server = await start_ami_server(secret=SECRET, read=classes["read"], write=classes["write"])
    ami = Ami("127.0.0.1", server.port, "ivrs", SECRET)
    await ami.start()
    try:
        assert await ami.wait_ready(5)
        assert await ami.live_channels() == []
        with pytest.raises(AmiError, match="No such channel"):  # allowed, just no such call
            await ami.mute_recording("PJSIP/carrier-00000001", True)
        assert (await listen_in(ami, "PJSIP/carrier-00000001", "201", "sup")).response == "Success"
    finally:
        await ami.close()
        await server.stop()


async def test_the_sms_code_of_a_first_call_is_keyed_muted_too(
    ivr_with_ami: RunningAgi,
    ami_server: RunningAmi,
    make_trucker: Callable[..., Any],
    sms: Any,
) -> None:
    mobile = "91234567"
    trucker: Trucker = await make_trucker(needs_activation=True)
    codes = iter([trucker.code, lambda: sms.last_code(mobile)])  # the token's, then the SMS's
    states_at_prompt: dict[str, list[str]] = {}

    def watch(command: Command) -> None:
        if command.prompt_id in ("register.mobile", "register.sms_code", "register.done"):
            states = [state for _, state in mutes(ami_server)]
            states_at_prompt.setdefault(command.prompt_id, states)

    record = await place_call(
        ivr_with_ami.host,
        ivr_with_ami.port,
        keys=f"3 {trucker.login_keys()} {mobile} 1 {{totp}} 1 * 9",
        totp=lambda: next(codes)(),
        channels=ami_server.channels,
        on_command=watch,
    )
    assert "register.done" in record.prompt_ids
    assert states_at_prompt == {
        "register.mobile": ["1", "0"],  # the login's
        "register.sms_code": ["1", "0", "1"],
        "register.done": ["1", "0", "1", "0"],
    }
    sms_code = sms.last_code(mobile)
    assert re.fullmatch(rf"{trucker.password}#\d{{6}}#{sms_code}", keys(record, muted=True))
    assert mobile in keys(record, muted=False)
