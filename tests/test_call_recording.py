"""A simulated call rendered to audio (simulator/call_wav.py, `ivrs call --record`).

English sounds are built offline once for the module; a tiny scripted FastAGI peer (plain
asyncio, like tests/test_simulator.py) behaves as the IVR does at a menu and a password entry,
stopping the recording around the password as ivr/recording_mute.py does over AGI. Expected lengths
are worked out here from the WAV files themselves, not from the renderer. The recording holds
what MixMonitor wrote: nothing while it was stopped, silence while AMI muted it.
"""

from __future__ import annotations

import asyncio
import math
import re
import wave
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cli.main import build_parser
from cli.phone import call_from_cli
from ivr.ami_connection import Ami
from prompts.build import build
from prompts.manifest import durations_ms
from simulator import (
    CallRecord,
    SimulatedAsterisk,
    place_call,
    render,
    render_call,
    start_ami_server,
)
from tests.support.servers import ivr_server

RATE = 8000
PER_MS = RATE // 1000
KEY_FRAMES = 160 * PER_MS  # a DTMF tone of 100 ms and a gap of 60 ms
ANSWER_FRAMES = 500 * PER_MS  # the first ANSWER's wait
TIMEOUT_FRAMES = 1000 * PER_MS  # a 3 s timeout, shortened to 1 s
BARGE_IN_FRAMES = 1220 * PER_MS  # where the simulator's barge-in stops a prompt
DTMF_LOW, DTMF_HIGH = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
ALL_KEYS = '"0123456789*#"'


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sounds")
    report = build(engine="espeak", langs=["en"], out_dir=out)
    assert report.ok, report.summary()
    return out


def frames_of(sounds: Path, file: str) -> int:
    with wave.open(str(sounds / "en" / f"{file}.wav"), "rb") as w:
        return w.getnframes()


def samples_of(path: Path) -> array[int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        samples = array("h", w.readframes(w.getnframes()))
    return samples


def goertzel(samples: array[int], hz: float) -> float:
    """The power of one frequency in a block of samples."""
    coeff = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dtmf_key(samples: array[int]) -> str | None:
    """The key whose two frequencies stand out (each 10x any other DTMF frequency), if any."""
    low = {hz: goertzel(samples, hz) for hz in DTMF_LOW}
    high = {hz: goertzel(samples, hz) for hz in DTMF_HIGH}
    row, column = max(low, key=low.__getitem__), max(high, key=high.__getitem__)
    others = [p for hz, p in (low | high).items() if hz not in (row, column)]
    if min(low[row], high[column]) < 10 * max(others) or low[row] < 1e9:
        return None
    return "123A456B789C*0#D"[4 * DTMF_LOW.index(row) + DTMF_HIGH.index(column)]


async def ivrs_call(*argv: str) -> int:
    """`ivrs call ...` as the console script parses it, without its process-wide logging set-up
    (main() would point the logs at this test's captured stderr for every later test)."""
    args = build_parser().parse_args(["call", *argv])
    assert args.func.__name__ == "_call"
    return await call_from_cli(args)


# -- the scripted peer ------------------------------------------------------------------------

Talk = Callable[["Peer"], Awaitable[None]]


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.replies: list[str] = []

    async def line(self) -> str:
        return (await asyncio.wait_for(self.reader.readline(), 2)).decode().removesuffix("\n")

    async def command(self, command: str) -> str:
        self.writer.write(command.encode() + b"\n")
        reply = await self.line()
        while reply == "HANGUP":
            reply = await self.line()
        self.replies.append(reply)
        return reply


async def ivr_like(peer: Peer, *, stop_recording: bool = True) -> None:
    """A menu prompt (a key may barge in), digits read back, a password read as the IVR reads
    it (prompt, WAIT FOR DIGIT, GET DATA silence/1) with the recording stopped around it, a
    silent menu, goodbye."""
    await peer.command("ANSWER")
    if " result=0 " in await peer.command(f"STREAM FILE ivrs/menu/main {ALL_KEYS}"):
        await peer.command("WAIT FOR DIGIT 5000")
    await peer.command('SAY DIGITS 1234 ""')
    file = (await peer.command("GET VARIABLE MIXMONITOR_FILENAME")).split("(")[1].rstrip(")")
    if stop_recording:
        await peer.command('EXEC StopMixMonitor ""')
    if " result=0 " in await peer.command(f"STREAM FILE ivrs/login/password {ALL_KEYS}"):
        await peer.command("WAIT FOR DIGIT 5000")
    await peer.command("GET DATA silence/1 5000 12")
    if stop_recording:
        await peer.command(f'EXEC MixMonitor "{file},a"')
    await peer.command("WAIT FOR DIGIT 3000")
    await peer.command('STREAM FILE ivrs/call/goodbye ""')


async def recording_left_on(peer: Peer) -> None:
    await ivr_like(peer, stop_recording=False)


async def serving(talk: Talk, place: Callable[[int], Awaitable[Any]]) -> tuple[Any, Peer]:
    """Run `talk` as the FastAGI server while `place(port)` calls it."""
    peers: list[Peer] = []
    errors: list[BaseException] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        peers.append(peer)
        try:
            while await peer.line():  # the agi_* header, up to its blank line
                pass
            await talk(peer)
        except Exception as error:  # re-raised in the test
            errors.append(error)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        result = await asyncio.wait_for(place(server.sockets[0].getsockname()[1]), 20)
    if errors:
        raise errors[0]
    return result, peers[0]


async def call(keys: str, sounds: Path | None, talk: Talk = ivr_like) -> tuple[CallRecord, Peer]:
    async def place(port: int) -> CallRecord:
        return await place_call("127.0.0.1", port, keys=keys, sounds_dir=sounds)

    record, peer = await serving(talk, place)
    return record, peer


def expected_frames(sounds: Path, *, barge_in: bool, password: bool = False) -> int:
    """ivr_like's recording; `password`: with the recording left on around it."""
    account = BARGE_IN_FRAMES if barge_in else frames_of(sounds, "ivrs/menu/main")
    digits = sum(frames_of(sounds, f"digits/{d}") for d in "1234")
    return (
        ANSWER_FRAMES
        + account
        + KEY_FRAMES  # 1
        + digits
        + password_frames(sounds) * password
        + TIMEOUT_FRAMES
        + frames_of(sounds, "ivrs/call/goodbye")
    )


def password_frames(sounds: Path) -> int:
    """The password prompt, its first key and the other six keys: a caller typing on stops GET
    DATA's silence/1 at once, so no pause is heard between keys."""
    return frames_of(sounds, "ivrs/login/password") + KEY_FRAMES + 6 * KEY_FRAMES


# -- the tests --------------------------------------------------------------------------------


async def test_a_call_renders_to_an_8khz_wav_as_long_as_its_parts(
    sounds: Path, tmp_path: Path
) -> None:
    record, peer = await call("1 246810# .", sounds)
    goodbye_ms = durations_ms(sounds, "en")["ivrs/call/goodbye"]  # the simulator used it
    assert peer.replies[-4:] == [
        "200 result=46810",
        "200 result=0",  # MixMonitor, appending again
        "200 result=0",
        f"200 result=0 endpos={8 * goodbye_ms}",
    ]

    out = render_call(record, sounds, tmp_path / "calls" / "plain.wav")
    assert out == tmp_path / "calls" / "plain.wav"
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        frames = w.getnframes()
    assert abs(frames - expected_frames(sounds, barge_in=False)) <= PER_MS  # within 1 ms

    say = [span for span in record.timeline if span.kind == "say"]
    assert [span.files for span in say] == [("digits/1", "digits/2", "digits/3", "digits/4")]
    assert say[0].ms == sum(durations_ms(sounds, "en")[f] for f in say[0].files)


async def test_a_barge_in_cuts_the_prompt_and_the_key_tone_follows(
    sounds: Path, tmp_path: Path
) -> None:
    plain, _ = await call("1 246810# .", sounds)
    barged, peer = await call("^1 246810# .", sounds)
    assert peer.replies[1] == f"200 result=49 endpos={BARGE_IN_FRAMES}"

    long = render(plain, sounds, tmp_path / "plain.wav")
    short = render(barged, sounds, tmp_path / "barged.wav")
    assert short.frames == expected_frames(sounds, barge_in=True)
    assert long.frames - short.frames == frames_of(sounds, "ivrs/menu/main") - BARGE_IN_FRAMES

    # The key 1 sounds right where the cut prompt stops, in the file itself.
    samples = samples_of(short.path)
    start = ANSWER_FRAMES + BARGE_IN_FRAMES
    assert [(p.kind, p.start) for p in short.pieces if p.kind == "key"] == [("key", start)]
    assert dtmf_key(samples[start : start + 100 * PER_MS]) == "1"
    assert dtmf_key(samples[start - 100 * PER_MS : start]) is None  # speech before it


async def test_keys_typed_while_the_recording_is_stopped_are_not_in_it(
    sounds: Path, tmp_path: Path
) -> None:
    record, peer = await call("1 246810# .", sounds)
    assert peer.replies[4:6] == [
        f"200 result=1 (/var/spool/asterisk/monitor/{record.uniqueid}.wav)",
        "200 result=0",
    ]  # GET VARIABLE, StopMixMonitor
    keys = [span for span in record.timeline if span.kind == "keys"]
    assert [(span.keys, span.recorded_to) for span in keys] == [
        ("1", record.recording),
        ("2", None),
        ("46810#", None),
    ]
    rendering = render(record, sounds, tmp_path / "stopped.wav")
    samples = samples_of(rendering.path)
    assert [(p.kind, p.label) for p in rendering.pieces if p.kind == "key"] == [("key", "1")]
    # The file goes on from the digits read back straight to the timeout: the restart appended.
    after_digits = len(samples) - frames_of(sounds, "ivrs/call/goodbye") - TIMEOUT_FRAMES
    assert max(map(abs, samples[after_digits : after_digits + TIMEOUT_FRAMES])) == 0
    assert max(map(abs, samples[after_digits - 100 * PER_MS : after_digits])) > 100

    # Control: the same call with the recording left on carries the password's tones.
    control, _ = await call("1 246810# .", sounds, recording_left_on)
    samples = samples_of(render_call(control, sounds, tmp_path / "control.wav"))
    assert len(samples) == expected_frames(sounds, barge_in=False, password=True)
    start = after_digits + frames_of(sounds, "ivrs/login/password")
    assert dtmf_key(samples[start : start + 100 * PER_MS]) == "2"
    last = start + KEY_FRAMES + 5 * KEY_FRAMES
    assert dtmf_key(samples[last : last + 100 * PER_MS]) == "#"


async def test_a_muted_stretch_is_silence_as_long_as_what_it_replaced(
    sounds: Path, tmp_path: Path
) -> None:
    """AMI MixMonitorMute (09): the file keeps the time, as silence; a direction muted alone
    silences only its own side (read: the caller's keys; write: what plays to the caller)."""
    ami_server = await start_ami_server(secret="s")
    ami = Ami("127.0.0.1", ami_server.port, "ivrs", "s")
    await ami.start()
    assert await ami.wait_ready(5)

    def muting(directions: str) -> Talk:
        async def talk(peer: Peer) -> None:
            await peer.command("ANSWER")
            await peer.command(f"STREAM FILE ivrs/menu/main {ALL_KEYS}")
            name = (await peer.command("GET VARIABLE CHANNEL(name)")).split("(")[-1][:-1]
            await ami.send(
                {"Action": "MixMonitorMute", "Channel": name, "Direction": directions, "State": "1"}
            )
            await peer.command(f"STREAM FILE ivrs/login/password {ALL_KEYS}")
            await peer.command("WAIT FOR DIGIT 5000")
            await ami.mute_recording(name, False)
            await peer.command('STREAM FILE ivrs/call/goodbye ""')

        return talk

    async def place(port: int) -> CallRecord:
        return await place_call(
            "127.0.0.1", port, keys="7", sounds_dir=sounds, channels=ami_server.channels
        )

    try:
        renderings = {}
        for directions in ("both", "read", "write"):
            record, _ = await serving(muting(directions), place)
            renderings[directions] = render(record, sounds, tmp_path / f"{directions}.wav")
    finally:
        await ami.close()
        await ami_server.stop()
    start = ANSWER_FRAMES + frames_of(sounds, "ivrs/menu/main")
    muted = frames_of(sounds, "ivrs/login/password") + KEY_FRAMES
    both = renderings["both"]
    assert both.frames == start + muted + frames_of(sounds, "ivrs/call/goodbye")
    assert [(p.kind, p.start, p.frames) for p in both.pieces if p.kind == "muted"] == [
        ("muted", start, frames_of(sounds, "ivrs/login/password")),
        ("muted", start + frames_of(sounds, "ivrs/login/password"), KEY_FRAMES),
    ]
    samples = samples_of(both.path)
    assert max(map(abs, samples[start : start + muted])) == 0
    assert max(map(abs, samples[start - 100 * PER_MS : start])) > 100  # the prompt before
    assert max(map(abs, samples[start + muted : start + muted + 800])) > 100  # goodbye after
    read = samples_of(renderings["read"].path)  # the prompt plays on, the key is silence
    assert max(map(abs, read[start : start + 100 * PER_MS])) > 100
    assert max(map(abs, read[start + muted - KEY_FRAMES : start + muted])) == 0
    write = samples_of(renderings["write"].path)  # the prompt is silence, the key sounds
    assert max(map(abs, write[start : start + muted - KEY_FRAMES])) == 0
    key_at = start + muted - KEY_FRAMES
    assert dtmf_key(write[key_at : key_at + 100 * PER_MS]) == "7"


async def test_without_sounds_the_simulator_keeps_its_estimates() -> None:
    first, with_files = await call("1 246810# .", Path("/nonexistent/sounds"))
    second, without = await call("1 246810# .", None)
    # No manifest: nothing changes (but the recording's name, the call's uniqueid).
    assert [r.replace(first.uniqueid, "U") for r in with_files.replies] == [
        r.replace(second.uniqueid, "U") for r in without.replies
    ]


async def test_say_fragments_follow_the_channel_language() -> None:
    async def talk(peer: Peer) -> None:
        await peer.command("SET VARIABLE CHANNEL(language) zh_HK")
        await peer.command('SAY NUMBER 105 ""')
        await peer.command('SAY DATETIME 1700000000 "" pIM Asia/Hong_Kong')

    record, _ = await call("", None, talk)
    assert [span.files for span in record.timeline if span.kind == "say"] == [
        ("digits/1", "digits/hundred", "digits/0", "digits/5"),
        ("digits/a-m", "digits/6", "digits/oclock", "digits/10", "digits/3", "minute"),
    ]  # 105 is 一百零五; 06:13 Hong Kong time is 上午 六 點 十三 分
    assert {span.lang for span in record.timeline if span.kind == "say"} == {"zh_HK"}


async def test_ivrs_call_record_without_sounds_says_to_build_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "sounds"
    code = await ivrs_call("--record", str(tmp_path / "out.wav"), "--sounds", str(empty))
    assert code == 2
    error = capsys.readouterr().err
    assert f"no sound files in {empty}" in error and "ivrs prompts build" in error
    assert not (tmp_path / "out.wav").exists()


async def test_ivrs_call_record_writes_the_recording(
    sounds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.wav"

    async def place(port: int) -> int:
        where = ("--host", "127.0.0.1", "--port", str(port), "--keys", "^1 246810# .")
        return await ivrs_call(*where, "--record", str(out), "--sounds", str(sounds))

    code, _ = await serving(ivr_like, place)
    assert code == 0
    assert f"-- recording {out} (" in capsys.readouterr().out
    with wave.open(str(out), "rb") as w:
        assert w.getnframes() == expected_frames(sounds, barge_in=True)


async def test_a_real_ivr_call_records_no_password_or_token_code(
    sounds: Path, tmp_path: Path, phone: Callable[..., Any], make_trucker: Callable[..., Any]
) -> None:
    """No AMI configured: the server stops MixMonitor over AGI around the secrets."""
    trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker, sounds_dir=sounds)
    assert "bundle.submitted" in record.prompt_ids
    left_out = "".join(s.keys for s in record.timeline if s.kind == "keys" and not s.recorded_to)
    assert re.fullmatch(rf"{trucker.password}#\d{{6}}#", left_out)
    rendering = render(record, sounds, tmp_path / "ivr.wav")
    samples = samples_of(rendering.path)
    typed = "".join(p.label for p in rendering.pieces if p.kind == "key")
    assert typed == "".join(s.keys for s in record.timeline if s.kind == "keys" and s.recorded_to)
    assert typed.startswith(f"3{trucker.account}")  # the language, the account
    for piece in (p for p in rendering.pieces if p.kind == "key"):
        assert dtmf_key(samples[piece.start : piece.start + 100 * PER_MS]) == piece.label
    assert not rendering.missing


async def test_a_real_ivr_call_muted_by_ami_is_silent_while_secrets_are_keyed(
    sounds: Path,
    tmp_path: Path,
    backend: Any,
    make_trucker: Callable[..., Any],
) -> None:
    ami_server = await start_ami_server(secret="s")
    ami = Ami("127.0.0.1", ami_server.port, "ivrs", "s")
    await ami.start()
    assert await ami.wait_ready(5)
    ivr = await ivr_server(backend, tmp_path, ami)
    try:
        trucker = await make_trucker()
        record = await place_call(
            ivr.host,
            ivr.port,
            keys=trucker.bundle_keys(),
            totp=trucker.code,
            sounds_dir=sounds,
            channels=ami_server.channels,
        )
    finally:
        await ivr.stop(grace=5)
        await ami.close()
        await ami_server.stop()
    assert "bundle.submitted" in record.prompt_ids
    rendering = render(record, sounds, tmp_path / "ami.wav")
    samples = samples_of(rendering.path)
    muted = [p for p in rendering.pieces if p.kind == "muted"]
    assert muted and all(max(map(abs, samples[p.start : p.start + p.frames])) == 0 for p in muted)
    # One silent stretch, from the password prompt to the code's last key, in its own time.
    first, last = muted[0], muted[-1]
    assert all(p.kind == "muted" for p in rendering.pieces if first.start <= p.start <= last.start)
    spans = [s for s in record.timeline if s.muted]
    assert spans[0].files == ("ivrs/login/password",)
    assert re.fullmatch(
        rf"{trucker.password}#\d{{6}}#", "".join(s.keys for s in spans if s.kind == "keys")
    )
    assert sum(p.frames for p in muted) == sum(rendering_frames(s, sounds) for s in spans)
    typed = "".join(p.label for p in rendering.pieces if p.kind == "key")
    assert typed == "".join(s.keys for s in record.timeline if s.kind == "keys" and not s.muted)
    assert typed.startswith(f"3{trucker.account}")


def rendering_frames(span: Any, sounds: Path) -> int:
    """A muted span's length in the file: a key's tone and gap, or the sound played."""
    if span.kind == "keys":
        return KEY_FRAMES * len(span.keys)
    if span.kind == "prompt" and span.files[0].startswith("silence/"):
        return min(span.ms, 1000) * PER_MS
    if span.kind in ("prompt", "say"):
        return sum(frames_of(sounds, f) for f in span.files) if not span.cut else span.ms * PER_MS
    return min(span.ms, 1000) * PER_MS


def test_a_simulator_built_without_sounds_dir_still_takes_durations_ms() -> None:
    asterisk = SimulatedAsterisk(durations_ms={"ivrs/login/account": 2000})
    assert asterisk.channel.sounds.samples("ivrs/login/account", "en") == 16000
