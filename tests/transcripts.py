"""The captured Asterisk lines of ../shared/agi-transcripts, for protocol tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The repo's parent holds shared/ (a developer's checkout and CI's clean clone alike).
TRANSCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "agi-transcripts"


def load(name: str) -> dict[str, Any]:
    """The scenarios of fixtures.json or fixtures-2.json."""
    return json.loads((TRANSCRIPTS / name).read_text())["scenarios"]
