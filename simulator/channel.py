"""The simulated channel and the caller on it: what plays, what the caller types, the clock.

The clock is virtual: prompt lengths, timeouts and key presses add to it at once; with
`real_time` they are also slept through (divided by `speed`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .call_record import CallRecord, Heard, Span
from .keys import Keypad
from .sounds import SAMPLES_PER_MS, Sounds, prompt_part

FIRST_ANSWER_MS = 500  # 01: the first ANSWER waits up to 500 ms for media
BARGE_IN_MS = 1220  # 02: a key ~1.2 s into a prompt stops it at endpos=9760
HANGUP_IN_MS = 1000  # 07: a hang-up 1.0 s into vm-intro answers endpos=8000
KEY_MS = 250  # a key every 250 ms, as SendDTMF typed them in the captures
HANGUP_CAUSE = "16"  # 07 hupexec: HANGUPCAUSE after a hang-up (normal clearing)


@dataclass(frozen=True)
class Sound:
    """Something to play: a file (kind `prompt`) or what a SAY command speaks."""

    kind: str
    value: str
    text: str
    ms: int
    files: tuple[str, ...] = ()  # SAY: the fragment files Asterisk plays (prompts/say.py)
    offset_ms: int = 0  # a prompt started this far in (STREAM FILE's sample offset)


@dataclass(frozen=True)
class Played:
    pressed: str | None  # the key typed during it (it may not have been an escape key)
    interrupted: bool
    hung_up: bool
    ms: int


# Prompts whose answer is a secret (password, token code, SMS code).
SECRET_PROMPTS = frozenset({"login.password", "login.token", "register.sms_code"})


class Channel:
    """One call's channel. `record` collects what happens on it."""

    def __init__(
        self,
        record: CallRecord,
        *,
        name: str,
        caller_id: str | None,
        caller_name: str | None,
        context: str,
        extension: str,
        priority: int,
        answered: bool,
        sounds: Sounds,
        keypad: Keypad,
        real_time: bool,
        speed: float,
        on_heard: Callable[[Heard], None] | None,
    ):
        self.record = record
        self.name, self.caller_id, self.caller_name = name, caller_id, caller_name
        self.context, self.extension, self.priority = context, extension, priority
        self.sounds, self.keypad = sounds, keypad
        self.real_time, self.speed, self.on_heard = real_time, speed, on_heard
        self.now_ms = 0
        self.alive = True
        self.answered = answered  # the dialplan may answer before AGI() (08)
        self.failed = False  # a STREAM FILE of a missing file: AGISTATUS=FAILURE (08)
        self.hangup_due = False  # the caller hangs up during the command being answered
        # MixMonitor: the file it writes (None: not running), whether it records only while
        # bridged (`b`: an IVR call never is), and the directions AMI MixMonitorMute silences.
        self.monitor: str | None = None
        self.bridged_only = False
        self.muted: frozenset[str] = frozenset()

    # -- time, and what the caller hears --------------------------------------------------

    async def advance(self, ms: int, kind: str | None = "wait") -> None:
        """Move the clock on; `kind` (`wait`, `timeout`) puts the time on the call's timeline,
        None when the caller of advance records what filled it (a prompt, keys)."""
        if kind is not None and ms > 0:
            self.on_line(Span(kind, self.now_ms, ms, lang=self.record.language))
        self.now_ms += ms
        if self.real_time and ms > 0:
            await asyncio.sleep(ms / 1000 / self.speed)

    def on_line(self, span: Span) -> None:
        """What the line carried, stamped with what MixMonitor did with it."""
        # The caller's keys come in (Asterisk's "read" direction); prompts go out ("write").
        direction = "read" if span.kind == "keys" else "write"
        muted = direction in self.muted if span.kind != "wait" else bool(self.muted)
        recorded_to = None if self.bridged_only else self.monitor
        span = dataclasses.replace(span, recorded_to=recorded_to, muted=muted)
        self.record.timeline.append(span)

    # -- the recording (MixMonitor, as the dialplan, EXEC or AMI drive it) ------------------

    def start_monitor(self, file: str, options: str = "") -> None:
        """MixMonitor(file[,options]): a new MixMonitor replaces the file unless `a` (append);
        with `b` it records only while bridged: nothing, for an IVR call (05)."""
        if "a" not in options:  # what the file held before is overwritten
            self.record.timeline[:] = [
                dataclasses.replace(span, recorded_to=None) if span.recorded_to == file else span
                for span in self.record.timeline
            ]
        self.monitor, self.bridged_only, self.muted = file, "b" in options, frozenset()
        self.set("MIXMONITOR_FILENAME", file)  # 05: set by MixMonitor, without its options

    def stop_monitor(self) -> None:
        """StopMixMonitor: nothing more is written (the variable stays, as in Asterisk)."""
        self.monitor, self.muted = None, frozenset()

    def mute_monitor(self, directions: frozenset[str], muted: bool) -> bool:
        """AMI MixMonitorMute of `read`, `write` or both; False when no MixMonitor runs
        (app_mixmonitor.c answers "Cannot set mute flag")."""
        if self.monitor is None:
            return False
        self.muted = self.muted | directions if muted else self.muted - directions
        return True

    def hear(self, heard: Heard) -> None:
        self.record.heard.append(heard)
        if self.on_heard is not None:
            self.on_heard(heard)

    def hear_keys(self, keys: str, ms: int = 0) -> None:
        """The caller sent `keys`, taking `ms` of the clock from now (the caller advances it)."""
        if keys:
            # What is printed of a secret is its length only (docs/call-flow.md: never shown).
            secret = bool(self.record.prompt_ids) and self.record.prompt_ids[-1] in SECRET_PROMPTS
            shown = f"{len(keys)} secret key" + "s" * (len(keys) > 1) if secret else " ".join(keys)
            self.on_line(Span("keys", self.now_ms, ms, lang=self.record.language, keys=keys))
            self.hear(Heard("keys", keys, shown))

    async def answer(self) -> None:
        if not self.answered:
            await self.advance(FIRST_ANSWER_MS)
            self.answered = True

    def take_hangup_due(self) -> bool:
        due, self.hangup_due = self.hangup_due, False
        return due

    def hang_up(self, *, by_caller: bool) -> None:
        if self.alive:
            self.alive = False
            if by_caller:
                self.record.hung_up = True
                self.hear(Heard("hangup", "", ""))

    def exists(self, file: str) -> bool:
        if self.sounds.exists(file, self.record.language):
            return True
        self.hear(Heard("missing", file, ""))
        return False

    def prompt(self, file: str, ms: int | None = None) -> Sound:
        lang = self.record.language
        ms = self.sounds.samples(file, lang) // SAMPLES_PER_MS if ms is None else ms
        return Sound("prompt", file, self.sounds.text(file, lang), ms)

    async def play(self, sound: Sound, escape: str | None) -> Played:
        """Play `sound`; escape None: not interruptible, and the key script is not consulted."""
        barge = None
        if self.take_hangup_due():
            hung_up = True
        else:
            barge = self.keypad.take_barge_in() if escape is not None else None
            hung_up = barge is not None and barge.key is None
        pressed = barge.key if barge else None
        interrupted = pressed is not None and pressed in (escape or "")  # others are ignored (02)
        ms = sound.ms
        if hung_up:
            ms = min(HANGUP_IN_MS, sound.ms // 2)
        elif interrupted:
            ms = min(BARGE_IN_MS, sound.ms // 2)
        if not sound.value.startswith("silence/"):
            self.hear(Heard(sound.kind, sound.value, sound.text, pressed if interrupted else None))
        part = prompt_part(sound.value) if sound.kind == "prompt" else None
        if part and self.sounds.is_first_part(part, self.record.language):
            self.record.prompt_ids.append(part.prompt_id)
        is_prompt = sound.kind == "prompt"
        self.on_line(
            Span(
                "prompt" if is_prompt else "say",
                self.now_ms,
                ms,
                files=(sound.value,) if is_prompt else sound.files,
                lang=self.record.language,
                cut=hung_up or interrupted,
                offset_ms=sound.offset_ms,
            )
        )
        await self.advance(ms, None)
        if hung_up:
            self.hang_up(by_caller=True)
        return Played(pressed, interrupted, hung_up, ms)

    # -- variables ------------------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        if name.upper() == "CHANNEL(LANGUAGE)":
            self.record.language = value
        else:
            self.record.variables[name] = value

    def value(self, name: str) -> str | None:
        """A variable, a built-in (UNIQUEID, ...) or a function (CHANNEL(language), ...)."""
        if name.endswith(")"):
            function, _, arg = name[:-1].partition("(")
            return {
                ("CHANNEL", "language"): self.record.language,
                ("CHANNEL", "name"): self.name,
                ("CALLERID", "num"): self.caller_id or "",
                ("CALLERID", "name"): self.caller_name or "",
            }.get((function.upper(), arg.strip().lower()))
        builtins = {
            "UNIQUEID": self.record.uniqueid,
            "CHANNEL": self.name,
            "CONTEXT": self.context,
            "EXTEN": self.extension,
            "PRIORITY": str(self.priority),
            "HANGUPCAUSE": "0" if self.alive else HANGUP_CAUSE,
            "EPOCH": str(int(time.time())),
        }
        return builtins.get(name) or self.record.variables.get(name)

    def expand(self, text: str) -> str:
        """${NAME} and ${FUNCTION(arg)} as the dialplan expands them; unset is empty (05)."""
        return re.sub(r"\$\{([^{}]*)\}", lambda m: self.value(m[1]) or "", text)
