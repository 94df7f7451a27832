"""`<sounds>/manifest.json`: per built file, the hash of what was spoken, the engine that spoke
it and its length. The builder skips what is unchanged; the simulator and the caller-time
benchmark read real prompt lengths from it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"
VERSION = 1


@dataclass(frozen=True)
class Entry:
    hash: str
    engine: str  # "gtts" or "espeak": the engine that actually spoke it ("sox": a silence)
    ms: int


@dataclass
class Manifest:
    """Entries keyed `<lang>/<file>`, e.g. `zh_HK/ivrs/login/account`, `en/digits/5`."""

    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def load(cls, sounds_dir: Path | str) -> Manifest:
        path = Path(sounds_dir) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except ValueError:
            return cls(path)  # a torn or hand-edited manifest: rebuild everything
        if data.get("version") != VERSION:
            return cls(path)
        return cls(path, {key: Entry(**entry) for key, entry in data["files"].items()})

    def save(self) -> None:
        files = {key: asdict(self.entries[key]) for key in sorted(self.entries)}
        text = json.dumps({"version": VERSION, "files": files}, indent=1, ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # readers never see half a manifest

    def durations_ms(self, lang: str) -> dict[str, int]:
        prefix = f"{lang}/"
        entries = self.entries.items()
        return {k.removeprefix(prefix): e.ms for k, e in entries if k.startswith(prefix)}


def durations_ms(sounds_dir: Path | str, lang: str) -> dict[str, int]:
    """Sound file (`ivrs/login/account`, `digits/5`, `minute`) -> length in ms of the files
    built for `lang`; empty when nothing was built. The mapping `simulator`'s `Sounds`
    takes as `durations_ms`."""
    return Manifest.load(sounds_dir).durations_ms(lang)
