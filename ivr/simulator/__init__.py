"""The simulator: the Asterisk side of FastAGI (faithful to ../shared/agi-transcripts) with a
caller who follows a key script, for tests, the demo and benchmarks.

    record = await place_call("127.0.0.1", 4573, keys="1 ^12345678# {totp}#", totp=code)
    render_call(record, "var/sounds", "out.wav")  # the call as audio (recording.py)
"""

from .asterisk import SimulatedAsterisk, place_call
from .commands import find_command, parse_args
from .keys import KeyScriptError, KeyToken, ask_stdin, parse_keys
from .record import CallRecord, Command, Exchange, Heard, Span
from .recording import (
    Rendering,
    SoundsMissing,
    check_sounds,
    has_sounds,
    recording_path,
    render,
    render_call,
)
from .sounds import format_heard

__all__ = [
    "CallRecord",
    "Command",
    "Exchange",
    "Heard",
    "KeyScriptError",
    "KeyToken",
    "Rendering",
    "SimulatedAsterisk",
    "SoundsMissing",
    "Span",
    "ask_stdin",
    "check_sounds",
    "find_command",
    "format_heard",
    "has_sounds",
    "parse_args",
    "parse_keys",
    "place_call",
    "recording_path",
    "render",
    "render_call",
]
