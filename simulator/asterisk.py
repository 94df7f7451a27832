"""The Asterisk side of a FastAGI connection, as tests/transcripts/ shows Asterisk 22 do it.

One `SimulatedAsterisk` is one call: it sends the `agi_*` header, then answers each command line
the server sends, one at a time (no pipelining), until the server closes the connection; after
a hang-up it keeps the connection open, as Asterisk does (07), unless `exit_on_hangup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from prompts.catalog import Catalog

from .call_record import CallRecord, Command, Exchange, Heard
from .channel import Channel
from .command_line import COMMANDS, PLAYS_FILE, ShowUsage, find_command, parse_args
from .commands import Commands
from .keys import Ask, Keypad, ask_stdin, parse_keys
from .sounds import Sounds, prompt_part
from .usage import USAGE

ASTERISK_VERSION = "22.10.1"
HANGUP_LINE_DELAY_S = 0.04  # 07: the HANGUP line comes about 40 ms after the -1 reply
GIVE_UP_AFTER = 50  # commands with the key script used up before the caller hangs up

NOT_PERMITTED = "511 Command Not Permitted on a dead channel or intercept routine"
UNKNOWN = "510 Invalid or unknown command"
USAGE_FIRST = "520-Invalid command syntax.  Proper usage follows:"
USAGE_LAST = "520 End of proper usage."
USAGE_NONE = "520 Invalid command syntax.  Proper usage not available."
# Where the dialplan's MixMonitor writes (dialplan/extensions.conf: ${IVRS_RECORDINGS}).
MONITOR_DIR = "/var/spool/asterisk/monitor"

_calls = itertools.count(1)

# Called with each command before it is answered; may be a coroutine function.
OnCommand = Callable[[Command], Awaitable[None] | None]


class SimulatedAsterisk:
    """One call's channel, answering a FastAGI server over a (reader, writer) pair.

    keys: the caller's key script (keys.py); None asks at the keyboard (or `ask`).
    hangup_at: the caller hangs up during the first command it accepts: a command that plays or
    reads answers -1; after any other command the hang-up follows its reply.
    usage_lines: False answers wrong usage with the one-line 520 (a build without XML docs, 06).
    mixmonitor: the dialplan ran MixMonitor(<MONITOR_DIR>/<uniqueid>.wav) before AGI(), as
    dialplan/extensions.conf does: MIXMONITOR_FILENAME is set and the call is recorded
    (EXEC StopMixMonitor/MixMonitor and AMI MixMonitorMute change what the file gets).
    channels: calls in progress by channel name, shared with a simulated AMI server (ami.py).
    answered: the dialplan ran Answer() before AGI() (as the first capture's did, 08): the
    channel is up from the start, so CHANNEL STATUS says 6 and ANSWER returns at once.
    sounds_dir: built sound files (`ivrs prompts build`): prompts and SAY fragments last as long
    as the manifest says, so barge-in points match a recording rendered from those files
    (recording.py); durations_ms, when given, still comes first.
    """

    def __init__(
        self,
        *,
        keys: str | None = "",
        script: str = "ivrs",
        args: Sequence[str] = ("39023333",),
        uniqueid: str | None = None,
        caller_id: str | None = None,
        caller_name: str | None = None,
        dnid: str = "unknown",
        channel: str | None = None,
        language: str = "en",
        answered: bool = False,
        context: str = "ivrs",
        extension: str | None = None,
        priority: int = 1,
        totp: Callable[[], str] | None = None,
        catalog: Catalog | None = None,
        durations_ms: Mapping[str, int] | None = None,
        sounds_dir: Path | str | None = None,
        real_time: bool = False,
        speed: float = 1.0,
        hangup_at: Callable[[Command], bool] | None = None,
        exit_on_hangup: bool = False,
        sighup: bool = True,
        usage_lines: bool = True,
        on_heard: Callable[[Heard], None] | None = None,
        on_command: OnCommand | None = None,
        variables: Mapping[str, str] | None = None,
        max_commands: int = 2000,
        ask: Ask | None = None,
        mixmonitor: bool = True,
        channels: LiveChannels | None = None,
        linkedid: str | None = None,
    ):
        number = next(_calls)
        self.script, self.args, self.dnid = script, list(args), dnid
        self.hangup_at, self.max_commands = hangup_at, max_commands
        self.on_command = on_command
        self.exit_on_hangup, self.sighup, self.usage_lines = exit_on_hangup, sighup, usage_lines
        keypad = Keypad(
            parse_keys(keys or ""), totp=totp, ask=ask or (ask_stdin if keys is None else None)
        )
        self.record = CallRecord(uniqueid or f"{int(time.time())}.{number}", language=language)
        self.record.variables.update(variables or {})  # set by the dialplan before AGI()
        self.channel = Channel(
            self.record,
            name=channel or f"PJSIP/hotline-{number:08x}",
            caller_id=caller_id,
            caller_name=caller_name,
            context=context,
            extension=extension or (self.args[0] if self.args else "s"),
            priority=priority,
            answered=answered,
            sounds=Sounds(catalog, durations_ms, sounds_dir),
            keypad=keypad,
            real_time=real_time,
            speed=speed,
            on_heard=on_heard,
        )
        self.commands = Commands(self.channel)
        if mixmonitor:
            self.record.recording = f"{MONITOR_DIR}/{self.record.uniqueid}.wav"
            self.channel.start_monitor(self.record.recording)
        self.channels = channels
        self.linkedid = linkedid or self.record.uniqueid
        self.agi_request = ""  # agi_request, once the call is placed
        self._hangup_line_due = False
        self._closed = False
        self._silent_commands = 0
        self._lines: list[str] = []  # sent since the last exchange
        self._writer: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None

    def header(self, host: str, port: int, *, script_path: str | None = None) -> list[str]:
        """The `agi_*` lines in the captured order (01); no agi_network_script without a script.
        A classic AGI (`script_path`) gets no agi_network lines and its path as agi_request
        (res_agi.c setup_env writes agi_request first; launch_netscript adds the two before)."""
        channel, known = self.channel, self.channel.caller_id is not None
        if script_path is not None:
            request = [f"agi_request: {script_path}"]
        else:
            request = [
                "agi_network: yes",
                *([f"agi_network_script: {self.script}"] if self.script else []),
                f"agi_request: agi://{host}:{port}" + (f"/{self.script}" if self.script else ""),
            ]
        return [
            *request,
            f"agi_channel: {channel.name}",
            f"agi_language: {self.record.language}",
            f"agi_type: {channel.name.partition('/')[0]}",
            f"agi_uniqueid: {self.record.uniqueid}",
            f"agi_version: {ASTERISK_VERSION}",
            f"agi_callerid: {channel.caller_id if known else 'unknown'}",
            f"agi_calleridname: {channel.caller_name or 'unknown'}",
            f"agi_callingpres: {0 if known else 67}",  # 01: 67 without caller ID
            "agi_callingani2: 0",
            "agi_callington: 0",
            "agi_callingtns: 0",
            f"agi_dnid: {self.dnid}",
            "agi_rdnis: unknown",
            f"agi_context: {channel.context}",
            f"agi_extension: {channel.extension}",
            f"agi_priority: {channel.priority}",
            "agi_enhanced: 0.0",
            "agi_accountcode: ",
            f"agi_threadid: {threading.get_ident()}",
            *(f"agi_arg_{n}: {arg}" for n, arg in enumerate(self.args, 1)),
        ]

    async def run(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        process: asyncio.subprocess.Process | None = None,
        script_path: str | None = None,
    ) -> CallRecord:
        """Play the call over an open connection until it is closed; `host` and `port` only
        fill agi_request. A classic AGI `process` (classic.py) is told of a hang-up by SIGHUP
        instead of `HANGUP` lines; `script_path` is its agi_request."""
        self._writer, self._process = writer, process
        header = self.header(host, port, script_path=script_path)
        request = next(line for line in header if line.startswith("agi_request: "))
        self.agi_request = request.partition(": ")[2]
        if self.channels is not None:
            self.channels.add(self)
        try:
            await self._send([*header, ""])
            self._lines = []
            await self._between_commands()
            while not self._closed:
                if len(self.record.exchanges) >= self.max_commands + GIVE_UP_AFTER:
                    self._close("asterisk")  # a server that loops on a dead channel
                    break
                line = await self._read_line(reader)
                if line is None:
                    # The server closed or half-closed its side: AGI() ends, and its last act is
                    # a HANGUP line even when the caller is still there (07 halfclose). A
                    # classic script that closed its stdout gets no signal (run_agi: pid = -1).
                    if process is None:
                        await self._send(["HANGUP"] if self.sighup else [])
                    self._close("server")
                    break
                await self._respond(line)
                await self._between_commands()
        finally:
            if self.channels is not None:
                self.channels.remove(self)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        self.record.trailing = self._lines
        self.record.duration_ms = self.channel.now_ms
        alive, failed = self.channel.alive, self.channel.failed
        self.record.agi_status = "HANGUP" if not alive else "FAILURE" if failed else "SUCCESS"
        return self.record

    async def _read_line(self, reader: asyncio.StreamReader) -> str | None:
        reading = asyncio.ensure_future(reader.readline())
        try:
            if self._hangup_line_due:
                # 07: HANGUP about 40 ms after the -1, or before the reply to a command sent sooner
                await asyncio.wait({reading}, timeout=HANGUP_LINE_DELAY_S)
                self._hangup_line_due = False
                await self._notify_hangup()
            raw = await reading
        except (ConnectionError, ValueError):  # reset, or a line beyond the stream's limit
            return None
        finally:
            reading.cancel()
        if not raw:
            return None
        return raw.decode("utf-8", errors="replace").removesuffix("\n")  # only the newline goes

    async def _notify_hangup(self) -> None:
        """FastAGI: a `HANGUP` line; classic AGI: SIGHUP to the script (res_agi.c run_agi)."""
        if self._process is None:
            await self._send(["HANGUP"])
        elif self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGHUP)
            self.record.sighups += 1

    async def _send(self, lines: list[str]) -> None:
        assert self._writer is not None
        self._lines += lines
        self._writer.write("".join(line + "\n" for line in lines).encode())
        with contextlib.suppress(ConnectionError):  # the server is gone: its EOF comes next
            await self._writer.drain()

    def _close(self, by: Literal["server", "asterisk"]) -> None:
        self._closed = True
        self.record.closed_by = by

    async def _respond(self, line: str) -> None:
        channel, at_ms = self.channel, self.channel.now_ms
        argv = parse_args(line)
        words = find_command(argv)
        was_alive = channel.alive
        command = self._command(line, argv, words)
        if self.on_command is not None:  # tests act at a point of the call (stop the backend...)
            acted = self.on_command(command)
            if inspect.isawaitable(acted):
                await acted
        if was_alive:
            channel.hangup_due = self._caller_hangs_up_during(command)
        if words is None:
            reply = [UNKNOWN]
        elif not channel.alive and not COMMANDS[words]:
            reply = [NOT_PERMITTED]
        else:
            try:
                reply = await self.commands.run(words, argv)
            except ShowUsage:
                reply = self._usage(words)
        if channel.take_hangup_due():  # a command that neither plays nor reads: it follows
            channel.hang_up(by_caller=True)
        await self._send(reply)
        self.record.exchanges.append(Exchange(line, self._lines, at_ms))
        self._lines = []
        if was_alive and not channel.alive:
            self._hung_up()

    async def _between_commands(self) -> None:
        if self.channel.alive and self.channel.keypad.take_between():
            self.channel.hang_up(by_caller=True)
            self._hung_up()
        if not self.channel.alive and self.exit_on_hangup and not self._closed:
            # 07 hupexit: with AGIEXITONHANGUP=yes Asterisk sends HANGUP twice and closes at once
            if self.sighup:
                await self._notify_hangup()  # run_agi: the hang-up's notice...
                await self._notify_hangup()  # ...and the one as AGI() ends

            self._close("asterisk")

    def _hung_up(self) -> None:
        """The channel just died: the HANGUP line follows (07), unless AGISIGHUP=no or
        AGIEXITONHANGUP=yes (which sends its own two)."""
        self._hangup_line_due = self.sighup and not self.exit_on_hangup

    def _command(self, line: str, argv: list[str], words: tuple[str, ...] | None) -> Command:
        name = " ".join(words).upper() if words else (argv[0].upper() if argv else "")
        args = argv[len(words) if words else 1 :]
        part = prompt_part(args[0]) if words in PLAYS_FILE and args else None
        index = len(self.record.exchanges)
        return Command(index, name, args, part.prompt_id if part else None, line)

    def _caller_hangs_up_during(self, command: Command) -> bool:
        if self.hangup_at is not None and self.hangup_at(command):
            return True
        if command.index == self.max_commands:
            return True
        if self.channel.keypad.exhausted:  # a silent caller does not wait forever
            self._silent_commands += 1
            return self._silent_commands >= GIVE_UP_AFTER
        return False

    def _usage(self, words: tuple[str, ...]) -> list[str]:
        usage = USAGE.get(words) if self.usage_lines else None
        return [USAGE_FIRST, *usage, USAGE_LAST] if usage else [USAGE_NONE]


class LiveChannels:
    """The channels of calls in progress, by name, as Asterisk's channel container holds them:
    how a simulated AMI server (ami.py) finds a simulated call to mute or list. Watchers hear
    each channel come (`new`) and go (`hangup`)."""

    def __init__(self) -> None:
        self._calls: dict[str, SimulatedAsterisk] = {}
        self.watchers: list[Callable[[str, SimulatedAsterisk], None]] = []

    def add(self, call: SimulatedAsterisk) -> None:
        self._calls[call.channel.name] = call
        self._tell("new", call)

    def remove(self, call: SimulatedAsterisk) -> None:
        if self._calls.pop(call.channel.name, None) is not None:
            self._tell("hangup", call)

    def get(self, name: str) -> SimulatedAsterisk | None:
        return self._calls.get(name)

    def __iter__(self) -> Iterator[SimulatedAsterisk]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)

    def _tell(self, what: str, call: SimulatedAsterisk) -> None:
        for watcher in self.watchers:
            watcher(what, call)


async def place_call(host: str, port: int, **options: Any) -> CallRecord:
    """Call the FastAGI server at host:port as Asterisk would, and return what happened.
    `options` are SimulatedAsterisk's (keys, args, caller_id, totp, hangup_at, on_heard, ...).

    real_time: sleep through prompts, keys and timeouts (divided by `speed`), for demos and
    caller-time measurements; by default they only move the virtual clock.
    """
    asterisk = SimulatedAsterisk(**options)
    reader, writer = await asyncio.open_connection(host, port)
    return await asterisk.run(reader, writer, host=host, port=port)
