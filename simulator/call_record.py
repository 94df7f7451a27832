"""What a simulated call leaves behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Heard:
    """Something the caller heard (or did: kinds `keys` and `hangup`)."""

    kind: str  # prompt | digits | alpha | number | datetime | missing | keys | hangup
    value: str  # file name, digits, letters, number, epoch, keys pressed
    text: str  # what it says: catalog text in the channel language, "1 2 3", "14:35"
    interrupted_by: str | None = None


@dataclass(frozen=True)
class Span:
    """A stretch of what the line carried, in call order: what `recording.py` renders.

    kinds: `prompt` (a file, `silence/N` included), `say` (the fragment files a SAY command
    plays), `keys` (DTMF the caller sent), `timeout` (a reading command waited in vain),
    `wait` (any other time the clock moved: ANSWER, Wait()).
    """

    kind: str
    at_ms: int  # virtual clock at its start
    ms: int  # its length on the virtual clock; a prompt's: the part played
    files: tuple[str, ...] = ()  # prompt: its file; say: the fragments Asterisk plays
    lang: str = "en"  # the channel language then: the sound folder the files come from
    keys: str = ""  # keys: the keys pressed
    cut: bool = False  # a prompt or SAY stopped short by a key or a hang-up
    offset_ms: int = 0  # a prompt started this far in (STREAM FILE's sample offset)
    # The file MixMonitor was writing then (None: no MixMonitor ran), and whether it was muted
    # (AMI MixMonitorMute): what recording.py renders is what that file holds.
    recorded_to: str | None = None
    muted: bool = False


@dataclass(frozen=True)
class Command:
    """A command as `hangup_at` sees it."""

    index: int  # 0-based, among all commands of the call
    name: str  # "STREAM FILE", "GET DATA", ... (the first word for an unknown command)
    args: list[str]  # the arguments after the command words, quotes removed
    prompt_id: str | None  # STREAM FILE / GET DATA of an ivrs/ prompt
    line: str


@dataclass
class Exchange:
    command: str  # as received, without the newline
    reply: list[str]  # every line sent for it, unsolicited HANGUP lines before it included
    at_ms: int  # virtual time the command arrived


@dataclass
class CallRecord:
    uniqueid: str
    exchanges: list[Exchange] = field(default_factory=list)
    heard: list[Heard] = field(default_factory=list)
    prompt_ids: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    language: str = "en"  # CHANNEL(language)
    hung_up: bool = False  # the caller hung up (not the server's HANGUP)
    closed_by: Literal["server", "asterisk"] = "server"  # who closed (or half-closed) first
    duration_ms: int = 0
    trailing: list[str] = field(default_factory=list)  # lines sent after the last reply
    agi_status: str = "SUCCESS"  # the AGISTATUS the dialplan would see (08)
    timeline: list[Span] = field(default_factory=list)  # what the line carried, for recordings
    recording: str | None = None  # the file the dialplan's MixMonitor writes (MIXMONITOR_FILENAME)
    sighups: int = 0  # classic AGI: the SIGHUPs sent to the script (FastAGI gets HANGUP lines)
    exit_code: int | None = None  # classic AGI: how the script's process ended

    @property
    def fragment_runs(self) -> list[tuple[str, ...]]:
        """The IVR's variables as heard: each run of files other than `ivrs/` prompt parts
        (digits/, letters/, say/: prompts/say.py's `slot_files`) streamed back to back."""
        runs: list[tuple[str, ...]] = []
        run: list[str] = []
        for heard in [*self.heard, Heard("prompt", "ivrs/", "")]:
            if heard.kind != "prompt":
                continue
            if heard.value.startswith(("ivrs/", "silence/")):
                runs += [tuple(run)] if run else []
                run = []
            else:
                run.append(heard.value)
        return runs

    @property
    def said(self) -> list[str]:
        """The texts the caller heard, in order."""
        spoken = ("prompt", "digits", "alpha", "number", "datetime")
        return [heard.text for heard in self.heard if heard.kind in spoken and heard.text]
