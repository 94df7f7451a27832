"""The simulator: the Asterisk side of FastAGI (faithful to tests/transcripts/) with a
caller who follows a key script, for tests, the demo and benchmarks.

    record = await place_call("127.0.0.1", 4573, keys="1 ^12345678# {totp}#", totp=code)
    render_call(record, "var/sounds", "out.wav")  # the call as audio (recording.py)

    ami = await start_ami_server(agi=("127.0.0.1", 4573))  # AMI beside it (ami.py)
    await place_call("127.0.0.1", 4573, channels=ami.channels, keys="...")
    await run_classic_agi(["ivrs-agi"], keys="...")  # a process per call (classic.py)
"""

from .ami_server import AmiUser, RunningAmi, start_ami_server
from .asterisk import LiveChannels, SimulatedAsterisk, place_call
from .call_record import CallRecord, Command, Exchange, Heard, Span
from .call_wav import (
    Rendering,
    SoundsMissing,
    check_sounds,
    has_sounds,
    recording_path,
    render,
    render_call,
)
from .classic import run_classic_agi
from .command_line import find_command, parse_args
from .failover import FailoverCall, SrvTarget, place_call_hagi, srv_order
from .keys import KeyScriptError, KeyToken, ask_stdin, parse_keys
from .sounds import format_heard

__all__ = [
    "AmiUser",
    "CallRecord",
    "Command",
    "Exchange",
    "FailoverCall",
    "Heard",
    "KeyScriptError",
    "KeyToken",
    "LiveChannels",
    "Rendering",
    "RunningAmi",
    "SimulatedAsterisk",
    "SoundsMissing",
    "SrvTarget",
    "Span",
    "ask_stdin",
    "check_sounds",
    "find_command",
    "format_heard",
    "has_sounds",
    "parse_args",
    "parse_keys",
    "place_call",
    "place_call_hagi",
    "recording_path",
    "render",
    "render_call",
    "srv_order",
    "run_classic_agi",
    "start_ami_server",
]
