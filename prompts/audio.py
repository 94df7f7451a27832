"""Telephone audio with sox: 8 kHz, mono, 16-bit WAV, trimmed and loudness-normalised, and where
the built files are found again (for the simulator's recordings)."""

from __future__ import annotations

import re
import subprocess
import wave
from collections.abc import Sequence
from pathlib import Path

SAMPLE_RATE = 8000
TARGET_RMS_DB = -21.0  # every prompt and fragment at one loudness, so SAY parts match prompts
SILENT_RMS_DB = -45.0  # below this a synthesis produced no speech (an unknown character, ...)
MIN_SPEECH_MS = 80
TAIL_MS = 80  # a hard stop at the last sample clicks and runs SAY DIGITS' digits together
SENTENCE_GAP_MS = 350  # between the sentences of language.menu
# Trim below -46 dBFS (0.5 %): espeak pads with digital silence, gTTS' MP3s with faint noise.
_TRIM = ("silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse")
_STAT = re.compile(r"^(RMS lev dB|Length s)\s+(\S+)", re.MULTILINE)


class AudioError(Exception):
    """sox failed, or the result is silent or empty."""


def sox(*args: str | Path) -> str:
    """Run sox; its stderr (where `stats` reports) is returned."""
    try:
        done = subprocess.run(
            ["sox", *map(str, args)], capture_output=True, text=True, timeout=120, check=False
        )
    except FileNotFoundError as e:
        raise AudioError("sox is not installed (Debian package sox)") from e
    if done.returncode != 0:
        raise AudioError(f"sox {' '.join(map(str, args))}: {done.stderr.strip()}")
    return done.stderr


def to_telephone(raw: Path, out: Path, gap_ms: int = 0) -> None:
    """Any input sox reads (espeak's 22 kHz WAV, gTTS' MP3) to trimmed 8 kHz mono 16-bit,
    followed by gap_ms of silence."""
    encoding = ("-b", "16", "-e", "signed-integer")
    effects = ("channels", "1", *_TRIM, "rate", str(SAMPLE_RATE), "pad", "0", f"{gap_ms / 1000}")
    sox(raw, *encoding, out, *effects)


def telephone_recording(raws: Sequence[Path], out: Path) -> int:
    """One file from the engine's raw segments (several for language.menu, joined with a pause
    between sentences), normalised. Returns its length in ms."""
    parts = [out.with_name(f"{out.stem}-part{i}.wav") for i in range(len(raws))]
    for i, (raw, part) in enumerate(zip(raws, parts, strict=True)):
        to_telephone(raw, part, 0 if i == len(raws) - 1 else SENTENCE_GAP_MS)
    joined = parts[0]
    if len(parts) > 1:
        joined = out.with_name(f"{out.stem}-joined.wav")
        sox(*parts, joined)
    return normalise(joined, out)


def silence(out: Path, ms: int) -> int:
    """A telephone WAV of `ms` of digital silence. Returns its length in ms."""
    encoding = ("-r", str(SAMPLE_RATE), "-b", "16", "-e", "signed-integer", "-c", "1")
    sox("-n", *encoding, out, "trim", "0", f"{ms / 1000}")
    return duration_ms(out)


def level(path: Path) -> tuple[float, int]:
    """RMS level in dBFS (-inf for digital silence) and length in ms."""
    found = dict(_STAT.findall(sox(path, "-n", "stats")))
    return float(found.get("RMS lev dB", "-inf")), round(float(found.get("Length s", 0)) * 1000)


def normalise(src: Path, out: Path) -> int:
    """Bring the speech to TARGET_RMS_DB (a limiter keeps peaks from clipping) and add the
    tail; refuse silent or empty audio. Returns the length in ms."""
    rms_db, ms = level(src)
    if ms < MIN_SPEECH_MS or rms_db < SILENT_RMS_DB:
        raise AudioError(f"no speech in the synthesis ({ms} ms, RMS {rms_db} dBFS)")
    sox(src, out, "gain", "-l", f"{TARGET_RMS_DB - rms_db:.2f}", "pad", "0", f"{TAIL_MS / 1000}")
    return duration_ms(out)


def duration_ms(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return round(w.getnframes() * 1000 / w.getframerate())


def load_sound(sounds_dir: Path | str, lang: str, file: str) -> Path | None:
    """The WAV Asterisk would play for `file` (e.g. `ivrs/login/account`, `digits/5`) on a call
    in `lang`: the language's folder first, then `en`, as Asterisk falls back silently; None
    when neither has it."""
    for folder in dict.fromkeys((lang, "en")):
        path = Path(sounds_dir) / folder / f"{file}.wav"
        if path.is_file():
            return path
    return None
