"""Speech engines: gTTS (Google Translate's voices, needs the network) and espeak-ng (offline).
Each turns one Segment into a raw audio file that `prompts.audio` converts for the telephone."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

from prompts.speech import Segment, jyutping_phonemes, pinyin_ssml


class SynthesisError(Exception):
    """The engine could not speak a segment (network down, engine missing, ...)."""


class Espeak:
    """espeak-ng. Cantonese goes as Jyutping phonemes (`speech.jyutping_phonemes`; `yue`
    switches to English for Latin words by itself), Putonghua as pinyin (`speech.pinyin_ssml`)."""

    name = "espeak"
    VOICES = {"zh_HK": "yue", "zh_CN": "cmn-latn-pinyin", "en": "en"}

    def __init__(self, binary: str = "espeak-ng"):
        self.binary = binary

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def voice_input(self, segment: Segment) -> tuple[list[str], str]:
        """The voice options and the text espeak-ng is fed for a segment."""
        options = ["-v", self.VOICES[segment.voice]]
        if segment.voice == "zh_HK":
            return options, jyutping_phonemes(segment.text)
        if segment.voice == "zh_CN":  # SSML: voice changes between pinyin and English
            return [*options, "-m"], pinyin_ssml(segment.text)
        return options, segment.text

    def synthesize(self, segment: Segment, out_stem: Path) -> Path:
        out = out_stem.with_suffix(".wav")
        options, text = self.voice_input(segment)
        args = [self.binary, "-w", str(out), *options]
        try:
            done = subprocess.run(args, input=text, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SynthesisError(f"espeak-ng: {e}") from e
        if done.returncode != 0 or not out.is_file():
            raise SynthesisError(f"espeak-ng: {done.stderr.strip() or done.returncode}")
        return out


class Gtts:
    """gTTS. Cantonese is gTTS' `yue`; Putonghua `zh-CN`."""

    name = "gtts"
    LANGS = {"zh_HK": "yue", "zh_CN": "zh-CN", "en": "en"}

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout

    def synthesize(self, segment: Segment, out_stem: Path) -> Path:
        try:
            import requests
            from gtts import gTTS, gTTSError
        except ImportError as e:
            raise SynthesisError("gTTS is not installed (pip install gTTS)") from e

        out = out_stem.with_suffix(".mp3")
        # lang_check=False: the language table is ours, and checking it costs a request.
        tts = gTTS(
            segment.text, lang=self.LANGS[segment.voice], lang_check=False, timeout=self.timeout
        )
        try:
            tts.save(str(out))
        except (gTTSError, requests.RequestException, OSError) as e:
            raise SynthesisError(f"gTTS: {e}") from e
        if out.stat().st_size == 0:
            raise SynthesisError("gTTS: empty answer")
        return out


class Breaker:
    """Stops asking gTTS after a few failures in a row, so an offline build does not wait for
    a timeout on every file (each file then falls back to espeak straight away)."""

    def __init__(self, limit: int = 3):
        self.limit = limit
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self._failures >= self.limit

    def record(self, ok: bool) -> None:
        with self._lock:
            self._failures = 0 if ok else self._failures + 1


def speak(
    segments: tuple[Segment, ...],
    out_dir: Path,
    espeak: Espeak,
    gtts: Gtts | None = None,
    breaker: Breaker | None = None,
) -> tuple[str, list[Path], str | None]:
    """All segments of one file by one engine: gTTS when given (and not given up on), else or
    on failure espeak. Returns the engine used, the raw files, and why gTTS was not used."""
    fallback_reason = None
    if gtts is not None and not (breaker and breaker.open):
        try:
            raws = [gtts.synthesize(s, out_dir / f"gtts{i}") for i, s in enumerate(segments)]
        except SynthesisError as e:
            fallback_reason = str(e)
            if breaker:
                breaker.record(False)
        else:
            if breaker:
                breaker.record(True)
            return gtts.name, raws, None
    elif gtts is not None:
        fallback_reason = "gTTS given up after repeated failures"
    raws = [espeak.synthesize(s, out_dir / f"espeak{i}") for i, s in enumerate(segments)]
    return espeak.name, raws, fallback_reason
