"""One call: its channel, its backend client, its log, and the input helpers every stage uses.

The helpers (`say`, `ask`, `menu`, `confirm`) own docs/call-flow.md's "Rules at every input prompt":
barge-in, `#`, first-digit and inter-digit timeouts, `*` back, `0` repeat, three failures, and
masking of secrets. Stages hold only decisions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import structlog

from backend_client import BackendClient
from backend_client.call_log import CallLog, CallLogOutbox, CallOpening
from ivr.ami_connection import Ami
from ivr.channel import ALL_KEYS, Channel
from ivr.recording_mute import secret_entry
from ivr.settings import IvrSettings
from prompts.catalog import Catalog, Slot, Sound
from prompts.say import slot_files

T = TypeVar("T")

ONE_MICROSECOND = timedelta(microseconds=1)


@lru_cache(maxsize=4096)
def _parts(catalog: Catalog, prompt_id: str, language: str) -> tuple[tuple[Sound | Slot, ...], int]:
    """A prompt's parts and the index of its last variable (-1: none), worked out once:
    every call plays the same few hundred."""
    parts = tuple(catalog.parts(prompt_id, language))
    return parts, max((i for i, p in enumerate(parts) if isinstance(p, Slot)), default=-1)


class GoBack(Exception):
    """The caller pressed `*`: go back one step."""


class CallEnded(Exception):
    """The flow decided to end the call (its goodbye has been said)."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


class ServerClosing(Exception):
    """The FastAGI server is shutting down and this call ran past the grace period: the flow
    says goodbye and ends it (raised once, by the call's next AGI command)."""


@dataclass
class EventLog:
    """Call events, kept in memory and sent to the backend in batches off the caller's path
    (a backend round trip between a barge-in and the next reading command loses keys).

    Each event of a call gets a time of its own (a microsecond later than the last, if the
    clock has not moved): the backend knows an event delivered twice by it."""

    events: list[dict[str, Any]] = field(default_factory=list)
    _last_at: datetime = field(default=datetime.min.replace(tzinfo=UTC), repr=False)

    def add(self, kind: str, name: str, duration_ms: int | None = None, **detail: Any) -> None:
        at = max(datetime.now(UTC), self._last_at + ONE_MICROSECOND)
        self._last_at = at
        self.events.append(
            {
                "at": at.isoformat(),
                "kind": kind,
                "name": name,
                "detail": detail,
                "duration_ms": duration_ms,
            }
        )

    def take(self) -> list[dict[str, Any]]:
        taken, self.events = self.events, []
        return taken


@dataclass
class Call:
    channel: Channel
    backend: BackendClient
    catalog: Catalog
    settings: IvrSettings
    log: Any
    uniqueid: str
    hotline: str
    caller_id: str | None
    call_log: CallLog  # open, events, end: to the backend in order, spooled when it is down
    language: str = "zh_HK"
    call_id: int | None = None
    account: str | None = None
    stage: str = "start"
    events: EventLog = field(default_factory=EventLog)
    # A key pressed during a prompt that asked for nothing: the first key of the next entry.
    typed_ahead: str | None = None
    # Set by the dialplan (IVRS_HELPDESK) when it can transfer a caller who is stuck.
    helpdesk: str | None = None
    _steps: int = 0
    # The server's AMI connection, to mute the recording (None: muted over AGI instead).
    ami: Ami | None = None

    @classmethod
    def from_channel(
        cls,
        channel: Channel,
        backend: BackendClient,
        catalog: Catalog,
        settings: IvrSettings,
        outbox: CallLogOutbox,
    ) -> Call:
        h = channel.headers
        uniqueid = h.get("agi_uniqueid", "")
        caller_id = h.get("agi_callerid")
        caller_id = None if caller_id in (None, "", "unknown") else caller_id
        hotline = h.get("agi_arg_1") or h.get("agi_dnid", "unknown")
        return cls(
            channel=channel,
            backend=backend,
            catalog=catalog,
            settings=settings,
            log=structlog.get_logger("ivr").bind(call=uniqueid),
            uniqueid=uniqueid,
            hotline=hotline,
            caller_id=caller_id,
            call_log=outbox.for_call(
                CallOpening(uniqueid, hotline, caller_id, h.get("agi_channel"), None)
            ),
        )

    def secret_entry(self) -> AbstractAsyncContextManager[None]:
        """`async with call.secret_entry():` the recording is muted while a secret is keyed."""
        return secret_entry(self.channel, self.ami, self.log)

    def enter(self, stage: str) -> None:
        self.stage = stage
        self.log = self.log.bind(stage=stage)
        self.events.add("stage", stage)
        self.send_events()  # the console shows each live call's stage

    def open_log(self, language: str) -> asyncio.Future[int]:
        """Open the call log in the backend, off the caller's path; the future gives its id
        (or raises BackendUnavailable, and the log goes to the spool)."""
        self.call_log.opening = replace(self.call_log.opening, language=language)
        return self.call_log.open()

    def send_events(self) -> None:
        """Send the events so far, in order, without waiting."""
        self.call_log.add(self.events.take())

    def step_key(self) -> str:
        """An idempotency key unique to this point of this call: a retry reuses it."""
        self._steps += 1
        return f"{self.uniqueid}:{self.stage}:{self._steps}"

    # --- output -----------------------------------------------------------------------------

    async def play(self, prompt_id: str, escape: str = ALL_KEYS, **values: Any) -> str | None:
        """Play a prompt, its variables spoken by SAY commands; the key that interrupted it.

        Variables given as lists play the text once per item, its closing part only after
        the last: `vehicle.recent` with mark=[A, B], count=[1, 2] says "For vehicle A, press
        1. For vehicle B, press 2. For another vehicle, press 9."."""
        started = time.monotonic()
        key = None
        parts, last_slot = _parts(self.catalog, prompt_id, self.language)
        rounds = max((len(v) for v in values.values() if isinstance(v, list)), default=1)
        for round_no in range(rounds):
            for i, part in enumerate(parts):
                if round_no < rounds - 1 and i > last_slot:
                    break  # the closing words come once, after the last item
                if isinstance(part, Sound):
                    key = await self.channel.stream(part.file, escape)
                else:
                    value = values[part.name]
                    item = value[round_no] if isinstance(value, list) else value
                    key = await self._say_slot(part, item, escape)
                if key:
                    break
            if key:
                break
        self.events.add(
            "prompt",
            prompt_id,
            duration_ms=int((time.monotonic() - started) * 1000),
            interrupted=bool(key),
        )
        return key

    async def _say_slot(self, slot: Slot, value: Any, escape: str) -> str | None:
        """A variable in the server's own fragments, one STREAM FILE each (prompts/say.py)."""
        for file in slot_files(slot.say, value, self.language, self.settings.timezone):
            if key := await self.channel.stream(file, escape):
                return key
        return None

    async def say(self, prompt_id: str, **values: Any) -> None:
        """A prompt that asks for nothing. A key pressed during it is kept as the first key of
        the next entry, so a caller who knows the way is never made to wait."""
        key = await self.play(prompt_id, **values)
        if key and self.typed_ahead is None:
            self.typed_ahead = key

    # --- input ------------------------------------------------------------------------------

    async def _first_key(self, prompt_id: str, values: Mapping[str, Any]) -> str | None:
        if self.typed_ahead is not None:
            typed, self.typed_ahead = self.typed_ahead, None
            return typed
        key = await self.play(prompt_id, **values)
        if key is None:
            key = await self.channel.wait_digit(self.settings.first_digit_timeout_ms)
        return key

    async def read_entry(
        self, prompt_id: str, max_len: int, values: Mapping[str, Any] | None = None
    ) -> str | None:
        """Keys up to `#`, a timeout or `max_len` (+1, so a too-long entry shows and the `#`
        after a full entry is not left to interrupt the next prompt). None: no input at all."""
        key = await self._first_key(prompt_id, values or {})
        if key is None:
            return None
        if key in "#*" or max_len == 1:
            return "" if key == "#" else key
        # At once: keys typed while no command reads are lost (transcript 10).
        rest = await self.channel.get_data(
            self.settings.entry_silence, self.settings.inter_digit_timeout_ms, max_len - 1
        )
        return key + rest.digits

    async def retry_or_end(self, failures: int, prompt_id: str) -> None:
        """Say why the entry failed; the third failure in a row then ends the call politely,
        or hands it to the helpdesk when the dialplan has one."""
        await self.say(prompt_id)
        if failures >= self.settings.max_failures:
            await self.say("call.too_many_errors")
            if self.helpdesk:
                await self.channel.set_var("IVRS_TRANSFER", "helpdesk")
                raise CallEnded("transferred_to_helpdesk")
            await self.say("call.goodbye")
            raise CallEnded("too_many_errors")

    async def ask(
        self,
        prompt_id: str,
        *,
        length: tuple[int, int],
        valid: Callable[[str], bool] | None = None,
        invalid_prompt: str = "error.invalid",
        secret: bool = False,
        **values: Any,
    ) -> str:
        """Ask for a digit entry ended by `#`; retried on bad input, `*` goes back."""
        low, high = length
        failures = 0
        while True:
            entry = await self.read_entry(prompt_id, high + 1, values)
            if entry is not None and "*" in entry:
                self.events.add("input", prompt_id, value="*")
                raise GoBack()
            shown = ("***" if secret else entry) if entry is not None else None
            self.events.add("input", prompt_id, value=shown, length=len(entry or ""))
            if entry is None or entry == "":
                failures += 1
                await self.retry_or_end(failures, "error.no_input")
                continue
            if not (low <= len(entry) <= high and entry.isdigit()) or (valid and not valid(entry)):
                failures += 1
                await self.retry_or_end(failures, invalid_prompt)
                continue
            return entry

    async def menu(
        self,
        prompt_id: str,
        choices: Mapping[str, T],
        *,
        on_silence: T | None = None,
        **values: Any,
    ) -> T:
        """A one-key menu: `0` repeats it, `*` goes back; `on_silence` is chosen after two
        silences (the language menu's Cantonese default)."""
        failures = silences = 0
        while True:
            key = await self.read_entry(prompt_id, 1, values)
            self.events.add("input", prompt_id, value=key)
            if key in choices:
                return choices[key]  # type: ignore[index]
            if key == "0":
                continue
            if key == "*":
                raise GoBack()
            if key is None:
                silences += 1
                if on_silence is not None and silences >= 2:
                    return on_silence
            failures += 1
            await self.retry_or_end(failures, "error.no_input" if key is None else "error.invalid")

    async def confirm(self, prompt_id: str, **values: Any) -> bool:
        """Read back and confirm: `1` confirm, `2` re-enter."""
        return await self.menu(prompt_id, {"1": True, "2": False}, **values)


async def close_quietly(call: Call, outcome: str) -> None:
    """Close the call log: sent, or spooled when the backend is down. Never raises (the call
    is over whatever happens here)."""
    try:
        await call.call_log.end(
            call.events.take(), outcome, call.stage, call.account, call.language
        )
    except Exception as e:  # noqa: BLE001
        call.log.error("call_log_not_closed", error=type(e).__name__)
