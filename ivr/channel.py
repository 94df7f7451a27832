"""The typed channel layer: the only code that reads or writes FastAGI protocol text.

Behaviour follows the captures in tests/transcripts/ (Asterisk 22), not panoramisk's
`Request.send_command`, which blocks after a one-line 520 and reads the unsolicited `HANGUP`
line as the reply to the next command. Stages call the typed methods below and never see
`200 result=`; a hang-up in any of its forms (`HANGUP` line, 511, EOF) raises `CallerHungUp`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from panoramisk.utils import parse_agi_result

ALL_KEYS = "0123456789*#"

# A reply line longer than this is not Asterisk talking; refuse rather than buffer it.
MAX_LINE = 64 * 1024


class CallerHungUp(Exception):
    """The caller is gone: a `HANGUP` line, a 511 answer, or the connection closed."""


class AGIError(Exception):
    """Asterisk refused a command (510 unknown command, 520 wrong usage): a bug in our code."""

    def __init__(self, command: str, code: int, message: str):
        super().__init__(f"{code} for {command.split(' ', 2)[:2]}: {message}")
        self.code = code


@dataclass(frozen=True)
class Reply:
    """One `200 result=...` answer, parsed."""

    result: str
    data: str | None = None  # the text in parentheses: `(bar baz)`, `(timeout)`
    endpos: int | None = None

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"

    @property
    def number(self) -> int:
        return int(self.result) if re.fullmatch(r"-?\d+", self.result) else 0


@dataclass(frozen=True)
class Entry:
    """What GET DATA collected: the keys (without the ending `#`) and whether it timed out."""

    digits: str
    timed_out: bool


_REPLY_200 = re.compile(
    r"200 result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?: endpos=(?P<endpos>\d+))?"
)


def parse_reply(line: str) -> Reply:
    """Parse a `200 result=` line. panoramisk's `parse_agi_result` classifies the line; it
    drops `(timeout)` from an empty result and `endpos` from `-1`, so those come from the
    line itself (transcripts README, "panoramisk 1.4's FastAGI"). A line that starts with
    `200 result=` is a 200 for panoramisk too: it is read at once (the hot path, every reply)."""
    m = _REPLY_200.fullmatch(line) if line.startswith("200 result=") else None
    if m is None:
        parsed = parse_agi_result(line)
        if parsed.get("status_code", 200) != 200:
            raise ValueError(f"not a 200 reply: {line!r}")
        raise ValueError(f"unreadable reply: {line!r}")
    endpos = m.group("endpos")
    return Reply(m.group("result"), m.group("data"), int(endpos) if endpos else None)


def quote(value: str) -> str:
    """An AGI argument in double quotes. Line breaks would start a new command, so they are
    refused outright rather than escaped."""
    if "\n" in value or "\r" in value:
        raise ValueError("AGI arguments cannot hold line breaks")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(code: int) -> str | None:
    """STREAM FILE, WAIT FOR DIGIT and SAY answer a key as its ASCII code (53 is `5`)."""
    return chr(code) if code > 0 else None


class Channel:
    """One live FastAGI connection. One command at a time: Asterisk stops a running STREAM FILE
    or GET DATA when another command arrives and never answers it (transcripts 02, 03)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: Mapping[str, str],
        log: structlog.typing.FilteringBoundLogger | None = None,
    ):
        self.reader = reader
        self.writer = writer
        self.headers = dict(headers)
        self.log = log or structlog.get_logger()
        self.hung_up = False
        self._lock = asyncio.Lock()
        self.missing_prompts: list[str] = []
        # (time.monotonic() when sent, the command) while a command awaits its answer.
        self.awaiting: tuple[float, str] | None = None

    # --- the wire -------------------------------------------------------------------------

    async def command(self, command: str) -> Reply:
        """Send one command and read its answer, skipping unsolicited `HANGUP` lines."""
        if self.hung_up:
            raise CallerHungUp("caller already hung up")
        async with self._lock:
            try:
                self.writer.write(command.encode() + b"\n")
                await self.writer.drain()
            except ConnectionError as e:
                raise self._gone(str(e)) from e
            self.awaiting = (time.monotonic(), command)
            try:
                hangup_line = False
                while True:
                    # Read here, not in a coroutine of its own: see ServedChannel.command.
                    line = _text(await self.reader.readuntil(b"\n"))
                    if line == "HANGUP":
                        # Unsolicited, it may come before the answer to this command (transcript
                        # 07): read the answer too, so replies stay in step, then report it.
                        hangup_line = True
                        continue
                    code = line[:3]
                    if code == "100":  # "100 result=0 Trying..." precedes the real answer
                        continue
                    if code == "511":
                        raise self._gone("511 dead channel")
                    if line.startswith("520-"):
                        usage = [line]
                        while not (usage[-1].startswith("520 ")):
                            usage.append(_text(await self.reader.readuntil(b"\n")))
                        raise AGIError(command, 520, " ".join(usage))
                    if code in ("510", "520"):
                        raise AGIError(command, int(code), line)
                    reply = parse_reply(line)
                    if hangup_line:
                        raise self._gone("HANGUP line")
                    return reply
            except asyncio.IncompleteReadError as e:  # EOF, possibly mid-line
                raise self._gone("connection closed by Asterisk") from e
            except asyncio.LimitOverrunError as e:
                raise self._gone("reply line too long") from e
            except ConnectionError as e:
                raise self._gone(str(e)) from e
            finally:
                self.awaiting = None

    def _gone(self, why: str) -> CallerHungUp:
        """The channel marked hung up, and the error that says so (for the caller to raise)."""
        self.hung_up = True
        return CallerHungUp(why)

    async def _playing(self, command: str, what: str) -> Reply:
        """A command that plays or reads keys. Its `-1` means a hang-up or a missing prompt
        file: CHANNEL STATUS tells them apart (a `HANGUP` line or 511 follows a hang-up)."""
        reply = await self.command(command)
        if reply.result == "-1":
            await self.command("CHANNEL STATUS")  # raises CallerHungUp if the caller is gone
            self.missing_prompts.append(what)
            self.log.error("prompt_missing", file=what, command=command.split(" ", 2)[:2])
        return reply

    async def close(self) -> None:
        """Asterisk never closes the connection after a hang-up (transcript 07): we must."""
        self.hung_up = True
        try:
            self.writer.close()
            async with asyncio.timeout(2):  # not wait_for: see ivr.server._within
                await self.writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            pass

    # --- typed commands -------------------------------------------------------------------

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def set_var(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {name} {quote(value)}")

    async def get_var(self, name: str) -> str | None:
        reply = await self.command(f"GET VARIABLE {name}")
        return reply.data if reply.result == "1" else None

    async def exec(self, application: str, arguments: str = "") -> int:
        """EXEC passes `arguments` unexpanded (`${UNIQUEID}` stays literal, transcript 05);
        `-2` means no such application."""
        return (await self.command(f"EXEC {application} {quote(arguments)}")).number

    async def stream(self, file: str, escape: str = ALL_KEYS) -> str | None:
        """Play a sound file; the key that interrupted it, or None."""
        reply = await self._playing(f"STREAM FILE {file} {quote(escape)}", file)
        return _key(reply.number)

    async def wait_digit(self, timeout_ms: int) -> str | None:
        reply = await self._playing(f"WAIT FOR DIGIT {timeout_ms}", "")
        return _key(reply.number)

    async def get_data(self, file: str, timeout_ms: int, max_digits: int) -> Entry:
        """Keys are returned as characters here, not ASCII codes (transcript 03)."""
        reply = await self._playing(f"GET DATA {file} {timeout_ms} {max_digits}", file)
        if reply.result == "-1":
            return Entry("", timed_out=True)
        return Entry(reply.result, reply.timed_out)

    async def say_digits(self, digits: str, escape: str = ALL_KEYS) -> str | None:
        return _key((await self._playing(f"SAY DIGITS {digits} {quote(escape)}", digits)).number)

    async def say_alpha(self, letters: str, escape: str = ALL_KEYS) -> str | None:
        return _key((await self._playing(f"SAY ALPHA {letters} {quote(escape)}", letters)).number)

    async def say_number(self, number: int, escape: str = ALL_KEYS) -> str | None:
        reply = await self._playing(f"SAY NUMBER {number} {quote(escape)}", str(number))
        return _key(reply.number)

    async def say_datetime(
        self, epoch: int, fmt: str, timezone: str, escape: str = ALL_KEYS
    ) -> str | None:
        reply = await self._playing(
            f"SAY DATETIME {epoch} {quote(escape)} {quote(fmt)} {quote(timezone)}", str(epoch)
        )
        return _key(reply.number)


MAX_HEADER_LINES = 200


class HeaderError(Exception):
    """The connection closed or misbehaved before the end of the `agi_*` header."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


async def read_header(reader: asyncio.StreamReader, timeout: float = 10.0) -> dict[str, str]:
    """The `agi_*` lines up to the empty line, in one read (cheaper in a burst than a read per
    line): Asterisk ends every line with "\n" and the header with an empty one (res_agi.c).
    panoramisk's own loop never checks for EOF and spins forever on a connection closed early
    (transcripts README)."""
    try:
        async with asyncio.timeout(timeout):
            raw = await reader.readuntil(b"\n\n")
    except asyncio.IncompleteReadError as e:
        raise HeaderError("connection closed during the header") from e
    except asyncio.LimitOverrunError as e:
        raise HeaderError("header too long") from e
    except TimeoutError as e:
        raise HeaderError("header timed out") from e
    lines = raw.decode("utf-8", errors="replace").split("\n")[:-2]
    if len(lines) > MAX_HEADER_LINES:
        raise HeaderError("header too long")
    headers: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            raise HeaderError("not an agi_ header line")
        # `agi_accountcode: ` carries an empty value after ": " (transcript 01).
        headers[key] = value[1:] if value.startswith(" ") else value
    return headers


def script_name(headers: Mapping[str, str]) -> str:
    """`agi_network_script` without its query string: `ivrs?lang=yue` is the route `ivrs`."""
    return headers.get("agi_network_script", "").split("?", 1)[0].strip("/")
