"""A finished simulated call as one WAV (8 kHz, mono, 16-bit), so a call can be heard without
Asterisk: what the dialplan's MixMonitor file (`CallRecord.recording`) would hold, rendered from
the call's timeline (`CallRecord.timeline`) and the sound files `ivrs prompts build` made.

    record = await place_call(host, port, keys="...", sounds_dir="var/sounds")
    render_call(record, "var/sounds", recording_path(record))  # var/recordings/<uniqueid>.wav

In call order:
- a prompt: its file in the channel language (English when missing, as Asterisk falls back),
  cut where a key or a hang-up stopped it (the simulator's own played length); pass the same
  `sounds_dir` to `place_call` so its lengths, and so the cut points, are the files' own;
- a SAY command: the fragment files Asterisk plays for it (prompts/say.py), cut the same way;
- a key: its DTMF pair (ITU-T Q.23), TONE_MS of tone then TONE_GAP_MS of silence;
- a timeout, ANSWER's wait, Wait(), `silence/N`: silence, at most MAX_SILENCE_MS each, so a
  recording stays short; a sound file not found: silence of its played length (capped too).

What MixMonitor did decides what is kept, as in Asterisk: a stretch muted by AMI MixMonitorMute
is silence of its own length (09: RMS 0 there); a stretch while MixMonitor was stopped
(StopMixMonitor) is not in the file at all, and a restart with `a` appends after it; a restart
without `a` overwrites what came before. Secrets stay out only because the FastAGI server mutes
or stops the recording around them (ivr/recording_mute.py): nothing here guesses which keys are
secret.
"""

from __future__ import annotations

import math
import os
import sys
import wave
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from prompts.audio import SAMPLE_RATE, load_sound
from prompts.manifest import MANIFEST, Manifest

from .call_record import CallRecord, Span

FRAMES_PER_MS = SAMPLE_RATE // 1000
TONE_MS, TONE_GAP_MS = 100, 60  # per key: a DTMF pair, then a pause before the next key
KEY_MS = TONE_MS + TONE_GAP_MS
MAX_SILENCE_MS = 1000  # timeouts and waits are shortened to this
DTMF_LEVEL = 0.15  # of full scale, per tone: the pair a little above the prompts' -21 dBFS
RAMP_MS = 4  # fade in and out, so a tone does not click
RECORDINGS_DIR = Path("var/recordings")

# ITU-T Q.23: the low (row) and high (column) frequency of each key, in Hz.
_ROWS, _COLUMNS = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
DTMF_HZ: dict[str, tuple[int, int]] = {
    key: (_ROWS[row], _COLUMNS[column])
    for row, keys in enumerate(("123A", "456B", "789C", "*0#D"))
    for column, key in enumerate(keys)
}


class SoundsMissing(FileNotFoundError):
    """No built sound files where the recording should take them from."""

    def __init__(self, sounds_dir: Path | str):
        self.sounds_dir = Path(sounds_dir)
        super().__init__(
            f"no sound files in {self.sounds_dir} (no {MANIFEST} listing built files): "
            f"build them first with `ivrs prompts build --engine espeak --out {self.sounds_dir}`"
        )


class SoundFormatError(ValueError):
    """A sound file that is not 8 kHz, mono, 16-bit (not made by `ivrs prompts build`)."""


@dataclass(frozen=True)
class Piece:
    """One stretch of the rendered WAV. Muted stretches are labelled `muted`, never by what
    was keyed or played there."""

    kind: str  # prompt | say | key | muted | silence | missing
    start: int  # first frame in the WAV
    frames: int
    label: str  # the file(s), the key, or the span kind for silence

    @property
    def start_ms(self) -> float:
        return self.start / FRAMES_PER_MS

    @property
    def ms(self) -> float:
        return self.frames / FRAMES_PER_MS


@dataclass
class Rendering:
    path: Path
    pieces: list[Piece] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # `<lang>/<file>` rendered as silence

    @property
    def frames(self) -> int:
        return sum(piece.frames for piece in self.pieces)

    @property
    def ms(self) -> float:
        return self.frames / FRAMES_PER_MS


def has_sounds(sounds_dir: Path | str) -> bool:
    """The folder holds a build: a manifest whose first file is there."""
    entries = Manifest.load(sounds_dir).entries
    first = next(iter(entries), None)
    return first is not None and (Path(sounds_dir) / f"{first}.wav").is_file()


def check_sounds(sounds_dir: Path | str) -> None:
    """Raise SoundsMissing (its message says how to build them) unless the files are there."""
    if not has_sounds(sounds_dir):
        raise SoundsMissing(sounds_dir)


def recording_path(record: CallRecord, folder: Path | str = RECORDINGS_DIR) -> Path:
    """Where the demo keeps a call's recording: `<folder>/<uniqueid>.wav`."""
    return Path(folder) / f"{record.uniqueid}.wav"


def render_call(record: CallRecord, sounds_dir: Path | str, out_path: Path | str) -> Path:
    """Write the call's recording to out_path (folders made as needed); returns the path."""
    return render(record, sounds_dir, out_path).path


def render(record: CallRecord, sounds_dir: Path | str, out_path: Path | str) -> Rendering:
    """As render_call, also telling what went where and which files were not found."""
    check_sounds(sounds_dir)
    renderer = _Renderer(Path(sounds_dir), Path(out_path))
    for span in record.timeline:
        if record.recording is None or span.recorded_to != record.recording:
            continue  # MixMonitor was not writing this file then
        if span.muted:
            renderer.put_muted(span)
        else:
            renderer.add(span)
    renderer.write()
    return renderer.rendering


def dtmf_tone(key: str, ms: int = TONE_MS) -> bytes:
    """The key's two Q.23 frequencies, equal in level, faded in and out: 16-bit frames."""
    low, high = DTMF_HZ[key.upper()]
    count, ramp = ms * FRAMES_PER_MS, RAMP_MS * FRAMES_PER_MS
    peak = DTMF_LEVEL * 32767
    samples = array("h")
    for n in range(count):
        edge = min(n, count - 1 - n)
        fade = 0.5 - 0.5 * math.cos(math.pi * edge / ramp) if edge < ramp else 1.0
        t = n / SAMPLE_RATE
        value = math.sin(2 * math.pi * low * t) + math.sin(2 * math.pi * high * t)
        samples.append(round(peak * fade * value))
    return _bytes(samples)


def _bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":  # WAV frames are little-endian
        samples.byteswap()
    return samples.tobytes()


def _silence(frames: int) -> bytes:
    return bytes(2 * frames)


class _Renderer:
    def __init__(self, sounds_dir: Path, out_path: Path):
        self.sounds_dir = sounds_dir
        self.rendering = Rendering(out_path)
        self.chunks: list[bytes] = []
        self.frames = 0
        self._files: dict[Path, bytes] = {}
        self._tones: dict[str, bytes] = {}

    def add(self, span: Span) -> None:
        if span.kind == "prompt" and span.files and span.files[0].startswith("silence/"):
            self._put("silence", span.files[0], _silence(_capped(span.ms)))
        elif span.kind in ("prompt", "say"):
            self._play(span)
        elif span.kind == "keys":
            for key in span.keys:
                self._put("key", key, self._tone(key))
        elif span.kind in ("timeout", "wait"):
            self._put("silence", span.kind, _silence(_capped(span.ms)))

    def put_muted(self, span: Span) -> None:
        """MixMonitorMute: the stretch stays, as silence exactly as long as its sound."""
        pieces, chunks, start = len(self.rendering.pieces), len(self.chunks), self.frames
        self.add(span)
        frames = self.frames - start
        del self.rendering.pieces[pieces:], self.chunks[chunks:]
        self.frames = start
        self._put("muted", "muted", _silence(frames))

    def _play(self, span: Span) -> None:
        """A prompt or a SAY: its files one after another, cut at the played length if it was
        stopped short (a prompt started at an offset starts there)."""
        audio = bytearray()
        for file in span.files:
            path = load_sound(self.sounds_dir, span.lang, file)
            if path is None:
                self.rendering.missing.append(f"{span.lang}/{file}")
                if span.kind == "prompt":  # a lone missing file keeps its (capped) time
                    audio += _silence(_capped(span.ms))
                continue
            audio += self._read(path)
        if span.offset_ms:
            del audio[: 2 * span.offset_ms * FRAMES_PER_MS]
        if span.cut:
            del audio[2 * span.ms * FRAMES_PER_MS :]
        self._put(span.kind, " ".join(span.files), bytes(audio))

    def _tone(self, key: str) -> bytes:
        if key not in self._tones:
            tone = dtmf_tone(key) if key.upper() in DTMF_HZ else _silence(TONE_MS * FRAMES_PER_MS)
            self._tones[key] = tone + _silence(TONE_GAP_MS * FRAMES_PER_MS)
        return self._tones[key]

    def _read(self, path: Path) -> bytes:
        if path not in self._files:
            with wave.open(str(path), "rb") as w:
                shape = (w.getframerate(), w.getnchannels(), w.getsampwidth())
                if shape != (SAMPLE_RATE, 1, 2):
                    raise SoundFormatError(
                        f"{path}: {shape[0]} Hz, {shape[1]} channel(s), {8 * shape[2]}-bit; "
                        f"expected {SAMPLE_RATE} Hz mono 16-bit (rebuild with `ivrs prompts build`)"
                    )
                self._files[path] = w.readframes(w.getnframes())
        return self._files[path]

    def _put(self, kind: str, label: str, audio: bytes) -> None:
        frames = len(audio) // 2
        if frames:
            self.rendering.pieces.append(Piece(kind, self.frames, frames, label))
            self.chunks.append(audio)
            self.frames += frames

    def write(self) -> None:
        out = self.rendering.path
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        with wave.open(str(part), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            for chunk in self.chunks:
                w.writeframes(chunk)
        os.replace(part, out)  # never half a recording under the final name


def _capped(ms: int) -> int:
    return min(ms, MAX_SILENCE_MS) * FRAMES_PER_MS
