"""A simulated call rendered to audio (ivr/simulator/recording.py, `ivrs call --record`).

English sounds are built offline once for the module; a tiny scripted FastAGI peer (plain
asyncio, like tests/test_simulator.py) behaves as the IVR does at a menu and a password entry.
Expected lengths are worked out here from the WAV files themselves, not from the renderer.
"""

from __future__ import annotations

import asyncio
import math
import wave
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cli.main import build_parser
from cli.phone import call_from_cli
from ivr.simulator import CallRecord, SimulatedAsterisk, place_call, render, render_call
from prompts.build import build
from prompts.manifest import durations_ms

RATE = 8000
PER_MS = RATE // 1000
KEY_FRAMES = 160 * PER_MS  # a DTMF tone of 100 ms and a gap of 60 ms
ANSWER_FRAMES = 500 * PER_MS  # the first ANSWER's wait
SILENCE_1_FRAMES = 1000 * PER_MS  # GET DATA silence/1
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


async def ivr_like(peer: Peer) -> None:
    """A menu prompt (a key may barge in), digits read back, a password read as the IVR reads
    it (prompt, WAIT FOR DIGIT, GET DATA silence/1), a silent menu, goodbye."""
    await peer.command("ANSWER")
    if " result=0 " in await peer.command(f"STREAM FILE ivrs/login/account {ALL_KEYS}"):
        await peer.command("WAIT FOR DIGIT 5000")
    await peer.command('SAY DIGITS 1234 ""')
    if " result=0 " in await peer.command(f"STREAM FILE ivrs/login/password {ALL_KEYS}"):
        await peer.command("WAIT FOR DIGIT 5000")
    await peer.command("GET DATA silence/1 5000 12")
    await peer.command("WAIT FOR DIGIT 3000")
    await peer.command('STREAM FILE ivrs/call/goodbye ""')


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


def expected_frames(sounds: Path, *, barge_in: bool) -> int:
    account = BARGE_IN_FRAMES if barge_in else frames_of(sounds, "ivrs/login/account")
    digits = sum(frames_of(sounds, f"digits/{d}") for d in "1234")
    return (
        ANSWER_FRAMES
        + account
        + KEY_FRAMES  # 1
        + digits
        + frames_of(sounds, "ivrs/login/password")
        + KEY_FRAMES  # 2, secret
        + SILENCE_1_FRAMES
        + 6 * KEY_FRAMES  # 46810#, secret
        + TIMEOUT_FRAMES
        + frames_of(sounds, "ivrs/call/goodbye")
    )


# -- the tests --------------------------------------------------------------------------------


async def test_a_call_renders_to_an_8khz_wav_as_long_as_its_parts(
    sounds: Path, tmp_path: Path
) -> None:
    record, peer = await call("1 246810# .", sounds)
    goodbye_ms = durations_ms(sounds, "en")["ivrs/call/goodbye"]  # the simulator used it
    assert peer.replies[-3:] == [
        "200 result=46810",
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
    assert long.frames - short.frames == frames_of(sounds, "ivrs/login/account") - BARGE_IN_FRAMES

    # The key 1 sounds right where the cut prompt stops, in the file itself.
    samples = samples_of(short.path)
    start = ANSWER_FRAMES + BARGE_IN_FRAMES
    assert [(p.kind, p.start) for p in short.pieces if p.kind == "key"] == [("key", start)]
    assert dtmf_key(samples[start : start + 100 * PER_MS]) == "1"
    assert dtmf_key(samples[start - 100 * PER_MS : start]) is None  # speech before it


async def test_secret_keys_are_silence_in_the_recording(sounds: Path, tmp_path: Path) -> None:
    record, _ = await call("1 246810# .", sounds)
    keys = [span for span in record.timeline if span.kind == "keys"]
    assert [(span.keys, span.secret) for span in keys] == [
        ("1", False),
        ("2", True),
        ("46810#", True),
    ]

    rendering = render(record, sounds, tmp_path / "secret.wav")
    samples = samples_of(rendering.path)
    start = expected_frames(sounds, barge_in=False) - (
        frames_of(sounds, "ivrs/call/goodbye") + TIMEOUT_FRAMES + 7 * KEY_FRAMES + SILENCE_1_FRAMES
    )  # the password's first key, after its prompt
    secret = samples[start : start + 7 * KEY_FRAMES + SILENCE_1_FRAMES]
    assert len(secret) == 7 * KEY_FRAMES + SILENCE_1_FRAMES
    assert max(map(abs, secret)) == 0
    assert max(map(abs, samples[start - 100 * PER_MS : start])) > 100  # the prompt just before
    labels = [(p.kind, p.label) for p in rendering.pieces if p.kind in ("key", "secret")]
    assert labels == [("key", "1"), *[("secret", "secret")] * 7]  # the digits are not named

    # Control: the same call with nothing marked secret carries the tones there.
    record.timeline[:] = [replace(span, secret=False) for span in record.timeline]
    samples = samples_of(render_call(record, sounds, tmp_path / "control.wav"))
    assert dtmf_key(samples[start : start + 100 * PER_MS]) == "2"
    after = start + KEY_FRAMES + SILENCE_1_FRAMES + 5 * KEY_FRAMES
    assert dtmf_key(samples[after : after + 100 * PER_MS]) == "#"


async def test_without_sounds_the_simulator_keeps_its_estimates() -> None:
    _, with_files = await call("1 246810# .", Path("/nonexistent/sounds"))
    _, without = await call("1 246810# .", None)
    assert with_files.replies == without.replies  # no manifest: nothing changes


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
    trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker, sounds_dir=sounds)
    assert "bundle.submitted" in record.prompt_ids
    rendering = render(record, sounds, tmp_path / "ivr.wav")
    samples = samples_of(rendering.path)
    secrets = [p for p in rendering.pieces if p.kind == "secret"]
    code_keys = 6 + 1  # the token's code and #
    assert len(secrets) == len(trucker.password) + 1 + code_keys
    assert all(max(map(abs, samples[p.start : p.start + p.frames])) == 0 for p in secrets)
    typed = "".join(p.label for p in rendering.pieces if p.kind == "key")
    assert trucker.account + "#" in typed
    first = next(p for p in rendering.pieces if p.kind == "key")
    assert dtmf_key(samples[first.start : first.start + 100 * PER_MS]) == first.label
    assert not rendering.missing


def test_a_simulator_built_without_sounds_dir_still_takes_durations_ms() -> None:
    asterisk = SimulatedAsterisk(durations_ms={"ivrs/login/account": 2000})
    assert asterisk.channel.sounds.samples("ivrs/login/account", "en") == 16000
