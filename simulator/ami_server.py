"""A simulated Asterisk manager interface (AMI) on loopback, for tests: the protocol as
tests/transcripts/01 and 09 captured it from Asterisk 22, and as manager.c and
app_mixmonitor.c write their answers.

    ami = await start_ami_server(username="ivrs", secret="s3cret", agi=(host, port))
    await place_call(host, port, channels=ami.channels, keys="...")   # a call it can mute
    ami.actions          # what clients asked, as dicts (a Login's Secret is not kept)
    await ami.stop(); await ami.start()   # the same port again: clients must reconnect

It shares the calls in progress with the simulator by channel name (`LiveChannels`):
`MixMonitorMute` mutes that call's recording, `CoreShowChannels` lists the calls, and an
`Originate` of `Local/<hotline>@ivrs-test/n` to `<keys|silence|hangup>@ivrs-test-caller`
places a simulated call into the FastAGI server at `agi`, as dialplan/extensions.conf's
smoke-test contexts do on a real Asterisk; any other channel answers at once (a phone that
picks up: a supervisor's for ChanSpy).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .ami_messages import EOL, Headers, caller_number, channel_fields, read_message
from .asterisk import LiveChannels, place_call
from .call_record import CallRecord
from .keys import KeyScriptError

AMI_VERSION = "11.0.0"  # Asterisk 22's banner (09)
# Write classes each action needs (manager.c / app_mixmonitor.c registrations): any one will do.
AUTHORITY: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "mixmonitormute": frozenset({"system", "call"}),
    "coreshowchannels": frozenset({"system", "reporting"}),
    "originate": frozenset({"originate"}),
}
# Originate of these applications also needs `system` (manager.c action_originate).
SYSTEM_APPS = re.compile(r"system|exec", re.IGNORECASE)
SYSTEM_APP_DATA = ("SHELL", "EVAL")
# [ivrs-test] sends its extension (a hotline) to [ivrs], whose AGI() is priority 8.
TEST_IVR_CONTEXT, TEST_CALLER_CONTEXT, AGI_PRIORITY = "ivrs-test", "ivrs-test-caller", 8
DTMF_PAUSES = re.compile(r"[wW]+")  # SendDTMF: w is 0.5 s, W 1 s
HANGUP_CAUSE = ("16", "Normal Clearing")


@dataclass
class AmiUser:
    username: str
    secret: str
    read: frozenset[str] = frozenset({"call"})  # dialplan/manager.conf's `ivrs` user
    write: frozenset[str] = frozenset({"call", "reporting", "originate"})


@dataclass(eq=False)  # each session is itself (kept in a set)
class _Session:
    writer: asyncio.StreamWriter
    user: AmiUser | None = None
    events: frozenset[str] | None = None  # classes sent as events; None: all it may read

    def wants(self, category: str) -> bool:
        if self.user is None or category not in self.user.read:
            return False
        return self.events is None or category in self.events


@dataclass
class RunningAmi:
    """The server: `.port` stays the same across stop() and start()."""

    host: str
    port: int
    users: dict[str, AmiUser]
    channels: LiveChannels
    agi: tuple[str, int] | None
    call_options: dict[str, Any]
    actions: list[dict[str, Any]] = field(default_factory=list)
    originated: list[asyncio.Task[CallRecord | None]] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None
    _sessions: set[_Session] = field(default_factory=set)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        """Listen (again) on host:port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every session, as an Asterisk that goes down does."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.writer.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def sessions(self) -> int:
        """Clients logged in now."""
        return sum(1 for session in self._sessions if session.user is not None)

    # -- the connection ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.add(session)
        try:
            self._write(session, f"Asterisk Call Manager/{AMI_VERSION}{EOL}")
            while (message := await read_message(reader)) is not None:
                if not await self._handle(session, message):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(session)
            writer.close()

    def _write(self, session: _Session, text: str) -> None:
        if not session.writer.is_closing():
            session.writer.write(text.encode())

    def _reply(self, session: _Session, message: Mapping[str, str], *fields: tuple[str, str]):
        """A response: `Response` first, the request's ActionID next (astman_send_response)."""
        lines = [f"{fields[0][0]}: {fields[0][1]}"]
        if message.get("actionid"):
            lines.append(f"ActionID: {message['actionid']}")
        lines += [f"{name}: {value}" for name, value in fields[1:]]
        self._write(session, EOL.join(lines) + EOL + EOL)

    def _error(self, session: _Session, message: Mapping[str, str], text: str) -> None:
        self._reply(session, message, ("Response", "Error"), ("Message", text))

    def _event(self, name: str, category: str, fields: list[tuple[str, str]]) -> None:
        """An event to every session that reads its class (Privilege, Timestamp as
        manager.conf's timestampevents=yes gives them)."""
        now = time.time()
        head = [("Event", name), ("Privilege", f"{category},all"), ("Timestamp", f"{now:.6f}")]
        text = EOL.join(f"{k}: {v}" for k, v in head + fields) + EOL + EOL
        for session in list(self._sessions):
            if session.wants(category):
                self._write(session, text)

    # -- actions ----------------------------------------------------------------------------

    async def _handle(self, session: _Session, message: Headers) -> bool:
        """Answer one message; False ends the session."""
        self.actions.append(message.as_dict(leave_out="secret"))
        action = message.get("action", "").lower()
        if not action:
            self._error(session, message, "Missing action in request")
        elif action == "logoff":
            self._reply(
                session, message, ("Response", "Goodbye"), ("Message", "Thanks for all the fish.")
            )
            return False
        elif action == "login":
            return self._login(session, message)
        elif session.user is None:
            self._error(session, message, "Permission denied")
        elif action not in AUTHORITY:
            self._error(
                session,
                message,
                f"Invalid/unknown command: {message['action']}. "
                "Use Action: ListCommands to show available commands.",
            )
        elif AUTHORITY[action] and not AUTHORITY[action] & session.user.write:
            self._error(session, message, "Permission denied")
        else:
            await getattr(self, f"_{action}")(session, message)
        return True

    def _login(self, session: _Session, message: Mapping[str, str]) -> bool:
        user = self.users.get(message.get("username", ""))
        if user is None or message.get("secret") != user.secret:
            # manager.c sleeps 1 s first, then ends the session.
            self._error(session, message, "Authentication failed")
            return False
        session.user = user
        events = message.get("events", "").strip().lower()
        if events in ("off", "no", "false", "0"):
            session.events = frozenset()
        elif events and events not in ("on", "yes", "true", "1"):
            session.events = frozenset(e.strip() for e in events.split(","))
        self._reply(
            session, message, ("Response", "Success"), ("Message", "Authentication accepted")
        )
        return True

    async def _ping(self, session: _Session, message: Mapping[str, str]) -> None:
        stamp = f"{time.time():.6f}"
        self._reply(
            session, message, ("Response", "Success"), ("Ping", "Pong"), ("Timestamp", stamp)
        )

    async def _mixmonitormute(self, session: _Session, message: Mapping[str, str]) -> None:
        direction = message.get("direction", "").lower()
        name, state = message.get("channel", ""), message.get("state", "")
        directions = {"read": {"read"}, "write": {"write"}, "both": {"read", "write"}}
        if not direction:
            return self._error(
                session, message, "No direction specified. Must be read, write or both"
            )
        if direction not in directions:
            return self._error(
                session, message, "Invalid direction specified. Must be read, write or both"
            )
        if not name:
            return self._error(session, message, "No channel specified")
        if not state:
            return self._error(session, message, "No state specified")
        call = self.channels.get(name)
        if call is None:
            return self._error(session, message, "No such channel")
        muted = state.strip().lower() not in ("no", "false", "n", "f", "0", "off")  # ast_false
        if not call.channel.mute_monitor(frozenset(directions[direction]), muted):
            return self._error(session, message, "Cannot set mute flag")
        self._reply(session, message, ("Response", "Success"))

    async def _coreshowchannels(self, session: _Session, message: Mapping[str, str]) -> None:
        self._reply(
            session,
            message,
            ("Response", "Success"),
            ("EventList", "start"),
            ("Message", "Channels will follow"),
        )
        calls = list(self.channels)
        for call in calls:
            fields = [("Event", "CoreShowChannel")]
            if message.get("actionid"):
                fields.append(("ActionID", message["actionid"]))
            fields += channel_fields(call)
            self._write(session, EOL.join(f"{k}: {v}" for k, v in fields) + EOL + EOL)
        done = [("Event", "CoreShowChannelsComplete")]
        if message.get("actionid"):
            done.append(("ActionID", message["actionid"]))
        done += [("EventList", "Complete"), ("ListItems", str(len(calls)))]
        self._write(session, EOL.join(f"{k}: {v}" for k, v in done) + EOL + EOL)

    async def _originate(self, session: _Session, message: Headers) -> None:
        name, app = message.get("channel", ""), message.get("application", "")
        data = message.get("data", "")
        if not name:
            return self._error(session, message, "Channel not specified")
        if "/" not in name:
            return self._error(session, message, "Invalid channel")
        assert session.user is not None
        if app and "system" not in session.user.write:
            if SYSTEM_APPS.search(app) or any(word in data for word in SYSTEM_APP_DATA):
                return self._error(
                    session,
                    message,
                    "Originate with certain 'Application' arguments requires the additional "
                    "System privilege, which you do not have.",
                )
        variables = dict(v.partition("=")[::2] for v in message.all("variable"))
        decided: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.originated.append(asyncio.create_task(self._place(message, variables, decided)))
        if message.get("async", "").lower() not in ("true", "yes", "1", "on"):
            # A synchronous Originate answers once the call is answered or has failed.
            if await asyncio.shield(decided) != "Success":
                return self._error(session, message, "Originate failed")
        self._reply(
            session, message, ("Response", "Success"), ("Message", "Originate successfully queued")
        )

    async def _place(
        self, message: Headers, variables: dict[str, str], decided: asyncio.Future[str]
    ) -> CallRecord | None:
        """Originate: answer at once, or place the IVR test call; OriginateResponse tells."""

        def respond(response: str, channel: str, uid: str, reason: str = "4") -> None:
            if not decided.done():
                decided.set_result(response)
            self._originate_response(message, response, channel, uid, reason)

        number = next(self._numbers)
        requested = message["channel"]
        local = re.fullmatch(r"Local/([^@/]+)@([^/]+)(/n)?", requested)
        epoch = int(time.time())
        caller_uid, ivr_uid = f"{epoch}.{2 * number}", f"{epoch}.{2 * number + 1}"
        if local is None or local[2] != TEST_IVR_CONTEXT:
            channel = f"{requested.partition('/')[0]}/{requested.partition('/')[2]}-{number:08x}"
            respond("Success", channel, caller_uid)
            return None
        hotline = local[1]
        base = f"Local/{hotline}@{TEST_IVR_CONTEXT}-{number:08x}"
        keys = _caller_keys(message.get("exten", ""), variables)
        if self.agi is None or keys is None or message.get("context") != TEST_CALLER_CONTEXT:
            respond("Failure", requested, "<null>", reason="0")
            return None
        answered = asyncio.Event()

        def on_command(command: Any) -> None:
            if command.name == "ANSWER" and not answered.is_set():
                answered.set()
                respond("Success", f"{base};1", caller_uid)

        options: dict[str, Any] = {
            "keys": keys,
            "args": (hotline,),
            "channel": f"{base};2",
            "uniqueid": ivr_uid,
            "linkedid": caller_uid,
            "language": "zh_HK",  # [ivrs] sets CHANNEL(language) before AGI()
            "context": "ivrs",
            "extension": hotline,
            "priority": AGI_PRIORITY,
            "caller_id": caller_number(message.get("callerid", "")),
            "variables": variables,
            "on_command": on_command,
            "channels": self.channels,
            **self.call_options,
        }
        host, port = self.agi
        try:
            record = await place_call(host, port, **options)
        except KeyScriptError:  # SendDTMF of something a keypad cannot send
            respond("Failure", requested, "<null>", reason="0")
            return None
        except OSError:
            # AGI() FAILURE: the dialplan's fallback Playback() answers, speaks, hangs up.
            respond("Success", f"{base};1", caller_uid)
            return None
        if not answered.is_set():  # the server never answered: the caller half never rang up
            respond("Failure", f"{base};1", caller_uid, reason="0")
        cause, text = HANGUP_CAUSE
        for half, uid in ((f"{base};2", ivr_uid), (f"{base};1", caller_uid)):
            self._event(
                "Hangup",
                "call",
                [("Channel", half), ("Uniqueid", uid), ("Linkedid", caller_uid)]
                + [("Cause", cause), ("Cause-txt", text)],
            )
        return record

    def _originate_response(
        self, message: Mapping[str, str], response: str, channel: str, uid: str, reason: str = "4"
    ) -> None:
        """manager.c fast_originate's event (Reason 4: answered)."""
        fields = [("ActionID", message["actionid"])] if message.get("actionid") else []
        fields += [("Response", response), ("Channel", channel)]
        if message.get("application"):
            fields += [("Application", message["application"]), ("Data", message.get("data", ""))]
        else:
            fields += [("Context", message.get("context", "")), ("Exten", message.get("exten", ""))]
        caller_id = caller_number(message.get("callerid", ""))
        fields += [("Reason", reason), ("Uniqueid", uid)]
        fields += [("CallerIDNum", caller_id or "<unknown>"), ("CallerIDName", "<unknown>")]
        self._event("OriginateResponse", "call", fields)


def _caller_keys(exten: str, variables: Mapping[str, str]) -> str | None:
    """[ivrs-test-caller]'s extensions as a key script: `keys` types IVRS_TEST_KEYS (each run
    between SendDTMF pauses goes to the next command that reads keys), `silence` types
    nothing, `hangup` hangs up during the first prompt; None: no such extension."""
    if exten == "keys":
        return " ".join(DTMF_PAUSES.split(variables.get("IVRS_TEST_KEYS", ""))).strip()
    return {"silence": "", "hangup": "^!"}.get(exten)


async def start_ami_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    username: str = "ivrs",
    secret: str = "test-secret",
    read: frozenset[str] | None = None,
    write: frozenset[str] | None = None,
    channels: LiveChannels | None = None,
    agi: tuple[str, int] | None = None,
    call_options: Mapping[str, Any] | None = None,
) -> RunningAmi:
    """An AMI server with one user (by default manager.conf's least-privilege `ivrs`).
    agi: the FastAGI server that Originate's test calls reach; call_options: more
    SimulatedAsterisk options for those calls (sounds_dir, totp...)."""
    user = AmiUser(username, secret)
    user.read = read if read is not None else user.read
    user.write = write if write is not None else user.write
    running = RunningAmi(
        host, port, {username: user}, channels or LiveChannels(), agi, dict(call_options or {})
    )
    await running.start()
    return running
