"""Test callers on the real Asterisk, driven by prompt, not by clock.

A call is an AMI Originate of `Local/<hotline>@ivrs-test/n`: the `;2` half runs the hotline's
dialplan (the IVR), the `;1` half is the caller (it waits in [ivrs-test-driven]). The test
says which keys answer which prompt; the driver watches AMI's AGIExecStart events of the IVR's
channel and, when the command that plays that prompt starts, sends the first key (AMI
PlayDTMF, received on the IVR's half as a phone's key would be). Each further key goes when
the next command that reads keys starts (GET DATA takes all the rest of an entry at once),
because keys sent while no command reads are lost (tests/transcripts 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prompts.catalog import Sound, default_catalog

Message = dict[str, str]
READING = ("STREAM FILE", "GET DATA", "WAIT FOR DIGIT", "SAY ")  # commands that take keys
ONLY_READING = ("GET DATA", "WAIT FOR DIGIT")  # ... and play no prompt
EVENT_TIMEOUT_S = 40.0
# A key every 0.25 s, as a quick caller: keys queued closer than Asterisk's DTMF emulation
# takes are merged or dropped (channel.c, AST_MIN_DTMF_GAP and the emulated duration).
KEY_GAP_S = 0.25


class Ami:
    """A plain AMI connection: actions with their responses, and every event kept in order."""

    def __init__(self) -> None:
        self.events: list[Message] = []
        self._changed = asyncio.Condition()
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self, port: int, username: str, secret: str) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        await self._reader.readline()  # "Asterisk Call Manager/..."
        self._reader_task = asyncio.create_task(self._read())
        reply = await self.action("Login", Username=username, Secret=secret)
        assert reply.get("Response") == "Success", reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.action("Logoff"), 2)
        self._writer.close()
        if self._reader_task:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task

    async def action(self, name: str, **fields: str) -> Message:
        action_id = f"t{next(self._ids)}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = future
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        for key, value in fields.items():
            for one in value.split("\n") if key == "Variable" else [value]:
                lines.append(f"{key}: {one}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        return await asyncio.wait_for(future, 30)

    async def _read(self) -> None:
        message: Message = {}
        while line := await self._reader.readline():
            text = line.decode(errors="replace").rstrip("\r\n")
            if text:
                key, _, value = text.partition(": ")
                message.setdefault(key, value)
                continue
            if "Response" in message and message.get("ActionID") in self._pending:
                future = self._pending.pop(message["ActionID"])
                if not future.done():
                    future.set_result(message)
            elif "Event" in message:
                async with self._changed:
                    self.events.append(message)
                    self._changed.notify_all()
            message = {}

    async def wait_for(
        self, match: Callable[[Message], bool], after: int = 0, timeout: float = EVENT_TIMEOUT_S
    ) -> tuple[int, Message]:
        """The first event from index `after` on that matches, and its index."""

        def found() -> tuple[int, Message] | None:
            for i in range(after, len(self.events)):
                if match(self.events[i]):
                    return i, self.events[i]
            return None

        async with self._changed:
            result = await asyncio.wait_for(
                self._changed.wait_for(lambda: found() is not None), timeout
            )
            del result
            hit = found()
            assert hit is not None
            return hit


def prompt_file(prompt_id: str) -> str:
    """The first sound file of a prompt (prompts/catalog.yaml: ivrs/<part>/<name>, or its
    `-2` part where the prompt opens with a variable, as `bundle.more` opens with the CCRN)."""
    sounds = [p for p in default_catalog().parts(prompt_id, "en") if isinstance(p, Sound)]
    return sounds[0].file if sounds else "ivrs/" + prompt_id.replace(".", "/")


@dataclass
class Step:
    """Keys for a prompt; `{totp}` in them becomes the token's code when they are sent."""

    prompt_id: str
    keys: str
    at: str | None = None  # key only when this sound file of the prompt starts (heard the rest)
    # Hear the prompt out: every key goes to a command that only reads (WAIT FOR DIGIT, GET
    # DATA), as the simulator types its plain key tokens; otherwise the first key barges in
    # as the prompt starts (its `^` tokens) and the rest go to any command that takes keys.
    listen: bool = False


def steps(*pairs: tuple[str, str]) -> list[Step]:
    return [Step(prompt, keys) for prompt, keys in pairs]


@dataclass
class Call:
    """One test call: the IVR's half (`uniqueid`, its channel) and the caller's."""

    ami: Ami
    uniqueid: str  # the IVR half's UNIQUEID: the recording's and the call log's name
    caller_uniqueid: str
    start: int  # index of the first event of this call in ami.events
    channel: str = ""  # the IVR half, Local/...;2
    caller_channel: str = ""  # Local/...;1
    code: Callable[[], str] | None = None  # {totp} in the keys
    sms: Callable[[], str] | None = None  # {sms} in the keys: the SMS code received
    sent: list[tuple[str, str]] = field(default_factory=list)  # (prompt id, keys)

    def mine(self, event: Message) -> bool:
        return event.get("Uniqueid") == self.uniqueid

    def commands(self) -> list[str]:
        """The AGI commands the IVR sent, in order."""
        return [
            e["Command"]
            for e in self.ami.events[self.start :]
            if e.get("Event") == "AGIExecStart" and self.mine(e)
        ]

    def results(self) -> list[tuple[str, str]]:
        """(command, result) of each AGI command that completed, in order."""
        return [
            (e["Command"], e.get("Result", ""))
            for e in self.ami.events[self.start :]
            if e.get("Event") == "AGIExecEnd" and self.mine(e)
        ]

    async def wait_command(self, pattern: str, after: int | None = None) -> int:
        """Index of the IVR's next AGI command starting with `pattern` (a regex)."""
        regex = re.compile(pattern)
        index, _ = await self.ami.wait_for(
            lambda e: (
                e.get("Event") == "AGIExecStart"
                and self.mine(e)
                and regex.match(e.get("Command", "")) is not None
            ),
            self.start if after is None else after,
        )
        return index

    async def wait_prompt(self, prompt_id: str, after: int | None = None) -> int:
        return await self.wait_command(rf"STREAM FILE {re.escape(prompt_file(prompt_id))} ", after)

    async def press(self, digit: str) -> None:
        # Queued on the IVR's half as a key it received (Receive). Sent out of the caller's
        # half instead, a key's end waits for the Local channel's lock while WAIT FOR DIGIT
        # holds it, and arrives after that command has timed out.
        reply = await self.ami.action(
            "PlayDTMF", Channel=self.channel, Digit=digit, Duration="120", Receive="true"
        )
        assert reply.get("Response") == "Success", reply
        await asyncio.sleep(KEY_GAP_S)

    async def answer(self, step: Step, after: int | None = None) -> int:
        """Wait for the step's prompt, then key its keys as the IVR reads them; returns the
        index of the event from which the next step is looked for."""
        index = await self.wait_prompt(step.prompt_id, after)
        if step.at:
            index = await self.wait_command(rf"STREAM FILE {re.escape(step.at)} ", index)
        keys = step.keys
        if "{totp}" in keys and self.code:
            keys = keys.replace("{totp}", self.code())
        if "{sms}" in keys and self.sms:
            keys = keys.replace("{sms}", self.sms())
        self.sent.append((step.prompt_id, keys))
        takers = ONLY_READING if step.listen else READING
        position = 0
        while position < len(keys):
            if position > 0 or step.listen:
                index, event = await self.ami.wait_for(
                    lambda e: (
                        e.get("Event") == "AGIExecStart"
                        and self.mine(e)
                        and e.get("Command", "").startswith(takers)
                    ),
                    index + 1,
                )
                if event["Command"].startswith("GET DATA"):
                    for key in keys[position:]:
                        await self.press(key)
                    break
            await self.press(keys[position])
            position += 1
        return index + 1

    async def run(self, script: Sequence[Step]) -> int:
        """Answer each step's prompt in turn; the index of the event after the last one."""
        after = self.start
        for step in script:
            try:
                after = await self.answer(step, after)
            except TimeoutError:
                raise AssertionError(
                    f"no {step.prompt_id} prompt; the IVR's last commands: {self.transcript()}"
                ) from None
        return after

    def transcript(self, last: int = 20) -> str:
        """The IVR's last AGI commands with their results, one a line (for failures)."""
        lines = [f"{command} -> {result}" for command, result in self.results()[-last:]]
        return "\n  " + "\n  ".join(lines)

    async def hangup_caller(self) -> None:
        await self.ami.action("Hangup", Channel=self.caller_channel)

    async def ended(self, timeout: float = 60) -> Message:
        """The IVR half's Hangup event."""
        _, event = await self.ami.wait_for(
            lambda e: e.get("Event") == "Hangup" and self.mine(e), self.start, timeout
        )
        return event

    def verbose_of(self, log: str) -> list[str]:
        """The Asterisk log lines of this call's `ivrs:` Verbose() steps."""
        return [
            line for line in log.splitlines() if f"app_verbose.c: ivrs: {self.uniqueid}" in line
        ]


async def place(
    ami: Ami,
    extension: str = "39023333",
    context: str = "ivrs-test",
    code: Callable[[], str] | None = None,
    caller_id: str | None = None,
    sms: Callable[[], str] | None = None,
) -> Call:
    """Originate a test call; returns once both halves exist (the IVR half is running).
    By default from a number never seen before, so the language menu is asked (a known
    number's language is remembered)."""
    caller_id = caller_id or f"9{secrets.randbelow(10**7):07d}"
    base = f"{secrets.randbelow(10**9)}"
    call = Call(ami, f"ivrs-{base}.2", f"ivrs-{base}.1", len(ami.events), code=code, sms=sms)
    reply = await ami.action(
        "Originate",
        Channel=f"Local/{extension}@{context}/n",
        Context="ivrs-test-driven",
        Exten="caller",
        Priority="1",
        CallerID=f'"Test caller" <{caller_id}>',
        ChannelId=call.caller_uniqueid,
        OtherChannelId=call.uniqueid,
        Async="true",
    )
    assert reply.get("Response") == "Success", reply
    _, ivr = await ami.wait_for(
        lambda e: e.get("Event") == "Newchannel" and call.mine(e), call.start
    )
    _, caller = await ami.wait_for(
        lambda e: e.get("Event") == "Newchannel" and e.get("Uniqueid") == call.caller_uniqueid,
        call.start,
    )
    call.channel, call.caller_channel = ivr["Channel"], caller["Channel"]
    return call


def variable_set(call: Call, name: str) -> list[str]:
    """The values the IVR's half took for a channel variable (VarSet events), in order."""
    return [
        e.get("Value", "")
        for e in call.ami.events[call.start :]
        if e.get("Event") == "VarSet" and call.mine(e) and e.get("Variable") == name
    ]
