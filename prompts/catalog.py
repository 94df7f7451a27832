"""The prompt catalog: one text per prompt id and language, cut into sound files at variables.

docs/call-flow.md fixes the naming: prompt `bundle.submitted` is played as `ivrs/bundle/submitted`,
and a text with variables is cut at each one: part 1 `ivrs/bundle/submitted`, part 2
`ivrs/bundle/submitted-2`, ...; the variables between parts are spoken by SAY commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
LANGUAGES = ("zh_HK", "zh_CN", "en")
DEFAULT_LANGUAGE = "zh_HK"

# How each variable is spoken (docs/call-flow.md, "Numbers spoken"; prompts/say.py).
SLOT_SAY = {
    "key": "key",
    "digits": "digits",
    "mark": "alpha",
    "count": "number",
    "time": "datetime",
    "start": "datetime",
    "end": "datetime",
}
# Variables said otherwise in one prompt: vehicle.recent's {count} is the key to press
# ("press 2": 二, where two vehicles are 兩架).
SLOT_SAY_IN = {("vehicle.recent", "count"): "key"}

_VARIABLE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Sound:
    """One recorded part of a prompt."""

    file: str  # Asterisk sound name without extension, e.g. ivrs/login/account
    text: str


@dataclass(frozen=True)
class Slot:
    """A variable between parts, spoken as sound fragments (prompts/say.py)."""

    name: str
    say: str  # how: SLOT_SAY's kinds


Part = Sound | Slot


def sound_file(prompt_id: str, part_no: int = 1) -> str:
    base = "ivrs/" + prompt_id.replace(".", "/")
    return base if part_no == 1 else f"{base}-{part_no}"


class Catalog:
    def __init__(self, prompts: dict[str, dict[str, str]]):
        self.prompts = prompts
        self._by_file: dict[tuple[str, str], str] = {}
        for prompt_id in prompts:
            for lang in LANGUAGES:
                for part in self.parts(prompt_id, lang):
                    if isinstance(part, Sound):
                        self._by_file[(part.file, lang)] = part.text

    @classmethod
    def load(cls, path: Path | str | None = None) -> Catalog:
        data = yaml.safe_load(Path(path or CATALOG_FILE).read_text(encoding="utf-8"))
        return cls(data["prompts"])

    def ids(self) -> list[str]:
        return list(self.prompts)

    def text(self, prompt_id: str, lang: str) -> str:
        texts = self.prompts[prompt_id]
        return texts.get(lang) or texts["en"]

    def parts(self, prompt_id: str, lang: str) -> list[Part]:
        """The text cut at its variables: Sound, Slot, Sound, ... (empty sounds left out)."""
        parts: list[Part] = []
        pieces = _VARIABLE.split(self.text(prompt_id, lang))
        for i, piece in enumerate(pieces):
            if i % 2 == 1:
                parts.append(Slot(piece, SLOT_SAY_IN.get((prompt_id, piece), SLOT_SAY[piece])))
            elif piece.strip():
                parts.append(Sound(sound_file(prompt_id, i // 2 + 1), piece.strip()))
        return parts

    def text_of_file(self, file: str, lang: str) -> str | None:
        """The words a sound file says, or None when the catalog has no such file."""
        return self._by_file.get((file, lang)) or self._by_file.get((file, "en"))

    def files(self) -> set[str]:
        return {file for file, _ in self._by_file}


@cache
def default_catalog() -> Catalog:
    return Catalog.load()


def estimated_ms(text: str, lang: str) -> int:
    """A speaking time for a text when no built audio says better: about 14 characters a second
    in English, 4.5 Chinese characters a second."""
    if lang.startswith("zh"):
        cjk = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
        return int(cjk / 4.5 * 1000 + (len(text) - cjk) / 14 * 1000) + 300
    return int(len(text) / 14 * 1000) + 300
