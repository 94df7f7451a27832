"""What the caller hears: which sound files exist, how long they play, what they say."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prompts.catalog import Catalog, Sound, default_catalog, estimated_ms
from prompts.manifest import Manifest

from .call_record import Heard

SAMPLES_PER_MS = 8  # endpos counts 8 kHz samples
TIMEZONE = "Asia/Hong_Kong"

# Lengths (in samples) of the standard files the captures played: endpos at the end (02, 04, 07).
STANDARD_SAMPLES = {
    "vm-goodbye": 6920,
    "vm-intro": 45235,
    "digits/5": 6561,
    "ivrs-long": 48000,  # the first capture's 6-second test prompt
    "beep": 3424,  # GET DATA beep 2000 took 2.428 s (03)
}
STANDARD_MS = 800  # any other standard file: about one spoken word
SAY_MS = {"digits": 830, "alpha": 750, "number": 850, "datetime": 2400}  # per item, from 04


@dataclass(frozen=True)
class PromptPart:
    prompt_id: str
    part: int


def prompt_part(file: str) -> PromptPart | None:
    """`ivrs/bundle/ccrn_confirm-2` is part 2 of `bundle.ccrn_confirm` (docs/call-flow.md)."""
    if not file.startswith("ivrs/"):
        return None
    path, _, part = file.removeprefix("ivrs/").rpartition("-")
    if not (path and part.isdigit()):
        path, part = file.removeprefix("ivrs/"), "1"
    return PromptPart(path.replace("/", "."), int(part))


class Sounds:
    """The sound folder as the simulated Asterisk sees it: `ivrs/...` files are the catalog's
    (or those durations_ms lists); standard files exist, except names starting `no-such`.

    Lengths: durations_ms first (one mapping for every language), then, with `sounds_dir`, the
    built files' manifest in the channel language, else English (Asterisk's fallback), else an
    estimate from the text. With the manifest, SAY commands last as long as their fragments.
    """

    def __init__(
        self,
        catalog: Catalog | None,
        durations_ms: Mapping[str, int] | None,
        sounds_dir: Path | str | None = None,
    ):
        self._catalog = catalog
        self._durations_ms = dict(durations_ms or {})
        self._manifest = Manifest.load(sounds_dir) if sounds_dir is not None else None
        self._built: dict[str, dict[str, int]] = {}  # per language, from the manifest

    def built_ms(self, file: str, lang: str) -> int | None:
        """The length of `file` for a call in `lang`, when known (durations_ms, manifest)."""
        if file in self._durations_ms:
            return self._durations_ms[file]
        if self._manifest is None:
            return None
        for folder in dict.fromkeys((lang, "en")):
            if folder not in self._built:
                self._built[folder] = self._manifest.durations_ms(folder)
            if file in self._built[folder]:
                return self._built[folder][file]
        return None

    def fragments_ms(self, files: Iterable[str], lang: str) -> int | None:
        """How long a SAY command's fragments play; None unless every one is known."""
        total = 0
        for file in files:
            ms = self.built_ms(file, lang)
            if ms is None:
                return None
            total += ms
        return total

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:  # loaded only when an ivrs/ prompt is played
            self._catalog = default_catalog()
        return self._catalog

    def exists(self, file: str, lang: str) -> bool:
        if self.built_ms(file, lang) is not None:
            return True
        if file.startswith("ivrs/"):
            return self.catalog.text_of_file(file, lang) is not None
        return not file.rpartition("/")[2].startswith("no-such")

    def text(self, file: str, lang: str) -> str:
        if file.startswith("ivrs/"):
            return self.catalog.text_of_file(file, lang) or ""
        folder, _, name = file.rpartition("/")
        return name.upper() if folder in ("digits", "letters") else ""

    def samples(self, file: str, lang: str) -> int:
        built = self.built_ms(file, lang)
        if built is not None:
            return built * SAMPLES_PER_MS
        if file.startswith("ivrs/"):
            return estimated_ms(self.text(file, lang), lang) * SAMPLES_PER_MS
        if file.startswith("silence/") and file[8:].isdigit():
            return int(file[8:]) * 1000 * SAMPLES_PER_MS
        return STANDARD_SAMPLES.get(file, STANDARD_MS * SAMPLES_PER_MS)

    def is_first_part(self, part: PromptPart, lang: str) -> bool:
        """A prompt is recorded once, at its first recorded part (part 1 unless the text
        starts with a variable)."""
        if part.prompt_id not in self.catalog.prompts:
            return part.part == 1
        files = [p.file for p in self.catalog.parts(part.prompt_id, lang) if isinstance(p, Sound)]
        return bool(files) and prompt_part(files[0]) == part


def number_words(n: int) -> int:
    """How many sound files Asterisk's English grammar uses for a number (04: 42 is two)."""
    if n < 0:
        return 1 + number_words(-n)
    if n < 20:
        return 1
    if n < 100:
        return 1 if n % 10 == 0 else 2
    for size in (1_000_000_000, 1_000_000, 1000, 100):
        if n >= size:
            rest = n % size
            return number_words(n // size) + 1 + (number_words(rest) if rest else 0)
    return 1


# SAY DATETIME format letters (voicemail.conf): how each is shown in the heard text.
_DATE_FIELDS: dict[str, Callable[[datetime], str]] = {
    **dict.fromkeys("Aa", lambda t: t.strftime("%A")),
    **dict.fromkeys("Bbh", lambda t: t.strftime("%B")),
    "Y": lambda t: str(t.year),
    "m": lambda t: f"{t.month:02d}",
    **dict.fromkeys("de", lambda t: str(t.day)),
    "H": lambda t: f"{t.hour:02d}",
    "k": lambda t: str(t.hour),
    **dict.fromkeys("Il", lambda t: str(t.hour % 12 or 12)),
    "M": lambda t: f"{t.minute:02d}",
    "S": lambda t: f"{t.second:02d}",
    **dict.fromkeys("pP", lambda t: "AM" if t.hour < 12 else "PM"),
    "R": lambda t: f"{t:%H:%M}",
    "T": lambda t: f"{t:%H:%M:%S}",
    **dict.fromkeys("Qq", lambda t: f"{t:%Y-%m-%d}"),
}


def datetime_text(epoch: int, fmt: str, zone: str | None) -> str:
    """What SAY DATETIME says, in the format's order: "HM" -> "14:35", "IMp" -> "2:35 PM"."""
    moment = datetime.fromtimestamp(epoch, ZoneInfo(zone or TIMEZONE))
    words: list[str] = []
    for literal, letter in re.findall(r"'([^']*)'|(.)", fmt):
        if literal:  # a sound file named in the format, e.g. 'digits/at'
            words.append(literal.rpartition("/")[2])
        elif letter in _DATE_FIELDS:
            word = _DATE_FIELDS[letter](moment)
            if letter in "MS" and words and words[-1][-1:].isdigit():
                words[-1] += ":" + word  # minutes follow the hour: 14:35
            else:
                words.append(word)
    return " ".join(words)


def format_heard(heard: Heard) -> str:
    """One printable line, e.g. `[prompt] login.account: Please enter ...`, `(caller pressed 5)`."""
    if heard.kind == "keys":
        return f"(caller pressed {heard.text})"
    if heard.kind == "hangup":
        return "(caller hung up)"
    if heard.kind == "prompt":
        part = prompt_part(heard.value)
        label = heard.value
        if part is not None:
            label = part.prompt_id + ("" if part.part == 1 else f"-{part.part}")
        line = f"[prompt] {label}: {heard.text}" if heard.text else f"[prompt] {label}"
    elif heard.kind == "missing":
        line = f"[missing] {heard.value}"
    else:
        line = f"[{heard.kind}] {heard.text}"
    return line + (f" (interrupted by {heard.interrupted_by})" if heard.interrupted_by else "")
