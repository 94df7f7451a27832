"""Lines captured from a real Asterisk 22.10.1 over FastAGI (this folder's .md files say what
each shows), for protocol tests: fixtures.json and fixtures-2.json hold them as data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRANSCRIPTS = Path(__file__).resolve().parent


def load(name: str) -> dict[str, Any]:
    """The scenarios of fixtures.json or fixtures-2.json."""
    return json.loads((TRANSCRIPTS / name).read_text())["scenarios"]
