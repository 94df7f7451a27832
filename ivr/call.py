"""One call: its channel, its backend client, its log, and the input helpers every stage uses.

The helpers (`say`, `ask`, `menu`, `confirm`, `letters`, `end`, `request`) own docs/call-flow.md's
"Rules at every input prompt" and its key map: barge-in, `#`, timeouts, `*` back, `0` repeat, the
helpdesk key, three failures, please-hold, call events, masking of secrets. Stages hold only
decisions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar

import structlog

from backend_client import BackendClient, BackendError, CallOpened
from backend_client.call_log import CallLog, CallLogOutbox, CallOpening
from formats import keypad_letter
from ivr.ami_connection import Ami
from ivr.channel import ALL_KEYS, Channel
from ivr.events import EventLog
from ivr.recording_mute import secret_entry
from ivr.settings import IvrSettings
from prompts.catalog import Catalog, Slot, Sound
from prompts.say import slot_files

T = TypeVar("T")

# One key map for the whole call (docs/call-flow.md "Keys"): the same at every menu, never one
# of a menu's options. `*` also goes back from inside an entry.
KEY_REPEAT, KEY_BACK, KEY_HELPDESK = "0", "*", "7"
HELPDESK_VARIABLE = "IVRS_HELPDESK_DIAL"  # the dialplan's dial string for the helpdesk
# A caller waiting on the backend hears `call.hold` after this much silence (and again after
# each further wait): never more than 4 s of silence (docs/call-flow.md).
HOLD_AFTER_S = 2.5


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
    # Set by the dialplan (IVRS_HELPDESK_DIAL) when it can transfer a caller who is stuck.
    helpdesk: str | None = None
    # A fixed-length entry was just complete: a `#` typed after it is not the next answer.
    _swallow_hash: bool = False
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
        self.send_events()

    def open_log(self, language: str) -> asyncio.Future[CallOpened]:
        """Open the call log in the backend, off the caller's path; the future gives the
        backend's answer (or raises BackendUnavailable, and the log goes to the spool)."""
        self.call_log.opening = replace(self.call_log.opening, language=language)
        return self.call_log.open()

    def send_events(self) -> None:
        """Hand the events so far to the call log: they go with the call's end (or before it,
        past a request's worth), in order, without waiting."""
        self.call_log.add(self.events.take())

    @property
    def account_number(self) -> str:
        """The logged-in account (stages after login only)."""
        assert self.account is not None, "not logged in"
        return self.account

    async def hold(self, pending: Awaitable[T]) -> T:
        """Wait for a backend answer; past HOLD_AFTER_S of silence the caller hears `call.hold`
        while it still runs (keys pressed meanwhile are not taken)."""
        task = asyncio.ensure_future(pending)
        try:
            # An answer already in hand (the call's opening, mostly) is taken without waiting:
            # asyncio.wait would cost ~20 µs and two turns of the event loop, which a burst's
            # thousands of calls make long.
            while not task.done():
                if not (await asyncio.wait({task}, timeout=HOLD_AFTER_S))[0]:
                    await self.play("call.hold", "")
            return task.result()
        finally:
            task.cancel()  # the caller hung up during the hold prompt: nothing more to wait for

    async def request(self, name: str, pending: Awaitable[T], **detail: Any) -> T:
        """A backend request (held: `hold`); its result ("ok" or the error code) becomes a
        call event."""
        try:
            result = await self.hold(pending)
        except BackendError as e:
            self.events.add("backend", name, result=e.code, **detail)
            raise
        self.events.add("backend", name, result="ok", **detail)
        return result

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
        swallow, self._swallow_hash = self._swallow_hash, False
        if self.typed_ahead is not None:
            typed, self.typed_ahead = self.typed_ahead, None
            if not (swallow and typed == "#"):
                return typed
        # After a complete fixed-length entry a `#` does not cut the next prompt short.
        escape = ALL_KEYS.replace("#", "") if swallow else ALL_KEYS
        key = await self.play(prompt_id, escape, **values)
        if key is None:
            key = await self.channel.wait_digit(self.settings.first_digit_timeout_ms)
        if swallow and key == "#":  # the `#` after a complete fixed-length entry
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

    async def retry_or_end(
        self, failures: int, prompt_id: str, give_up: tuple[str, str] | None = None
    ) -> None:
        """Say why the entry failed; after the third failure in a row the caller hears
        `give_up` (outcome, prompt: what to do next) and is offered the helpdesk instead of
        being cut off."""
        await self.say(prompt_id)
        if failures >= self.settings.max_failures:
            await self.dead_end(*(give_up or ("too_many_errors", "call.too_many_errors")))

    async def end(self, outcome: str, *prompts: str) -> None:
        """Say `prompts`, then goodbye, and end the call with `outcome`."""
        for prompt in prompts:
            await self.say(prompt)
        await self.say("call.goodbye")
        raise CallEnded(outcome)

    async def transfer(self) -> None:
        """To the helpdesk: through the dialplan when it has one, else its number is said."""
        self.events.add("input", "helpdesk", transfer=bool(self.helpdesk))
        if not self.helpdesk:
            await self.end("helpdesk_referred", "call.helpdesk_number")
        await self.say("call.transfer")
        await self.channel.set_var("IVRS_TRANSFER", "helpdesk")
        raise CallEnded("transferred_to_helpdesk")

    async def dead_end(self, outcome: str, *prompts: str) -> None:
        """A call that cannot go on: say why and what to do next, then offer the helpdesk
        (when the dialplan can transfer) before the goodbye."""
        for prompt in prompts:
            await self.say(prompt)
        if self.helpdesk:
            key = await self.read_entry("call.helpdesk_offer", 1)
            if key == KEY_HELPDESK:
                await self.transfer()
        await self.end(outcome)

    async def ask(
        self,
        prompt_id: str,
        *,
        length: tuple[int, int],
        valid: Callable[[str], bool] | None = None,
        invalid_prompt: str = "error.invalid",
        give_up: tuple[str, str] | None = None,
        secret: bool = False,
        **values: Any,
    ) -> str:
        """Ask for a digit entry ended by `#`; retried on bad input, `*` goes back."""
        low, high = length
        fixed = low == high  # submits itself at its length: no `#` needed
        failures = 0
        while True:
            entry = await self.read_entry(prompt_id, high if fixed else high + 1, values)
            self._swallow_hash = fixed and len(entry or "") == high
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
                await self.retry_or_end(failures, invalid_prompt, give_up)
                continue
            return entry

    async def menu(
        self,
        prompt_id: str,
        choices: Mapping[str, T],
        *,
        on_silence: T | None = None,
        patience: int = 2,
        **values: Any,
    ) -> T:
        """A one-key menu with the call's key map (repeat, back, helpdesk); `on_silence` is
        chosen after `patience` silences (the language menu's Cantonese default)."""
        failures = silences = 0
        while True:
            key = await self.read_entry(prompt_id, 1, values)
            self.events.add("input", prompt_id, value=key)
            if key in choices:
                return choices[key]  # type: ignore[index]
            if key == KEY_REPEAT:
                continue
            if key == KEY_BACK:
                raise GoBack()
            if key == KEY_HELPDESK:
                await self.transfer()
            if key is None:
                silences += 1
                if on_silence is not None and silences >= patience:
                    return on_silence
            failures += 1
            await self.retry_or_end(failures, "error.no_input" if key is None else "error.invalid")

    async def confirm(self, prompt_id: str, **values: Any) -> bool:
        """Read back and confirm: `1` confirm, `2` re-enter."""
        return await self.menu(prompt_id, {"1": True, "2": False}, **values)

    async def letters(self, prompt_id: str) -> str:
        """Letters as key + position pairs (ITU E.161), each spoken back as soon as it is
        keyed; `#` (or silence after a letter) ends them, `*` goes back."""
        wait, failures = self.channel.wait_digit, 0
        while True:
            letters = ""
            key = await self.read_entry(prompt_id, 1)
            while key not in (None, "#"):
                if key == KEY_BACK:
                    raise GoBack()
                letter = keypad_letter(key, await wait(self.settings.inter_digit_timeout_ms) or "")
                if letter is None:
                    break
                letters += letter
                key = await self.channel.say_alpha(letter)
                key = key or await wait(self.settings.inter_digit_timeout_ms)
            if key == "#" or (key is None and letters):
                self.events.add("input", prompt_id, value=letters)
                return letters
            failures += 1
            await self.retry_or_end(failures, "error.no_input" if key is None else "error.invalid")


async def close_quietly(call: Call, outcome: str) -> None:
    """Close the call log: sent, or spooled when the backend is down. Never raises (the call
    is over whatever happens here)."""
    try:
        await call.call_log.end(
            call.events.take(), outcome, call.stage, call.account, call.language
        )
    except Exception as e:  # noqa: BLE001
        call.log.error("call_log_not_closed", error=type(e).__name__)
