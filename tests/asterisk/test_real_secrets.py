"""Secrets on a real Asterisk: the recording is silent over the password and the token code (AMI
mute, or AGI stop and append without AMI), and the log the shipped logger.conf writes holds no
key the caller typed."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from backend.database import Database
from tests.asterisk.calls import login_then_leave
from tests.asterisk.driver import Ami
from tests.asterisk.stack import Stack

CHUNK_S = 0.25  # a stretch of a prompt's samples looked for in the recording


def samples(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        return w.readframes(w.getnframes())


def heard(recording: bytes, prompt: Path) -> bool:
    """True when a quarter second from the middle of the prompt's audio is in the recording
    (a prompt is written to the recording sample for sample: no other audio is mixed in)."""
    audio = samples(prompt)
    middle, size = len(audio) // 2 & ~1, int(8000 * CHUNK_S) * 2
    chunk = audio[middle : middle + size]
    assert any(chunk), f"{prompt} is silent in the middle"
    return chunk in recording


def longest_silence_s(recording: bytes) -> float:
    longest = run = 0
    for i in range(0, len(recording) - 1, 2):
        run = run + 1 if recording[i] == 0 and recording[i + 1] == 0 else 0
        longest = max(longest, run)
    return longest / 8000


def prompt_wav(stack: Stack, prompt_file: str) -> Path:
    return stack.asterisk.root / "data" / "sounds" / "en" / f"{prompt_file}.wav"


def seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


async def test_the_recording_is_muted_over_the_secrets_through_ami(
    stack: Stack, ami: Ami, db: Database
) -> None:
    _, call = await login_then_leave(stack, ami, db)
    recording = samples(stack.asterisk.recordings / f"{call.uniqueid}.wav")
    wav = lambda name: prompt_wav(stack, name)  # noqa: E731
    assert heard(recording, wav("ivrs/login/account")) and heard(
        recording, wav("ivrs/vehicle/letters")
    )
    assert not heard(recording, wav("ivrs/login/password"))
    assert not heard(recording, wav("ivrs/login/token"))
    # The muted stretch keeps its time, as digital silence: both secret prompts at least.
    muted = seconds(wav("ivrs/login/password")) + seconds(wav("ivrs/login/token"))
    assert longest_silence_s(recording) >= muted
    events = [e for e in stack.agi.events() if e.get("call") == call.uniqueid]
    assert [e["event"] for e in events if e["event"].startswith("recording_")] == [
        "recording_muted",
        "recording_unmuted",
    ]
    assert {e["by"] for e in events if e["event"].startswith("recording_")} == {"ami"}


async def test_without_ami_the_recording_stops_over_the_secrets_and_goes_on_after(
    stack: Stack, ami: Ami, db: Database
) -> None:
    _, call = await login_then_leave(stack, ami, db, "no-ami", "ivrs-test-driven")
    recording = samples(stack.asterisk.recordings / f"{call.uniqueid}.wav")
    wav = lambda name: prompt_wav(stack, name)  # noqa: E731
    assert heard(recording, wav("ivrs/login/account")) and heard(
        recording, wav("ivrs/vehicle/letters")
    )
    assert not heard(recording, wav("ivrs/login/password"))
    assert not heard(recording, wav("ivrs/login/token"))
    events = [e for e in stack.agi_without_ami.events() if e.get("call") == call.uniqueid]
    muted = [e for e in events if e["event"] == "recording_muted"]
    assert [e["by"] for e in muted] == ["agi"]
    assert call.commands().count('EXEC StopMixMonitor ""') == 1


async def test_the_shipped_log_holds_no_password_or_code_the_caller_keyed(
    stack: Stack, ami: Ami, db: Database
) -> None:
    t, call = await login_then_leave(stack, ami, db)
    [(_, password), (_, code)] = [s for s in call.sent if s[0] in ("login.password", "login.token")]
    await asyncio.sleep(0.5)
    everything = stack.asterisk.log("everything")  # the dtmf channel: every key, as a warning
    keyed = [
        line for line in everything.splitlines() if "DTMF end '" in line and call.channel in line
    ]
    assert "".join(line.split("'")[1] for line in keyed).count(password.rstrip("#")) == 1
    for name in ("full", "messages", "stdout"):  # what the shipped logger.conf writes
        log = stack.asterisk.log(name)
        assert password.rstrip("#") not in log and code.rstrip("#") not in log, name
        assert "DTMF[" not in log, name  # no line of the dtmf channel
    assert t.password == password.rstrip("#")
