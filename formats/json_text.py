"""JSON text written by orjson, in C: the backend's JSON columns and parameters, and the IVR's
request bodies to it (a call's end with its events in a tenth of the standard library's time).

What orjson refuses and JSON allows (an integer beyond 64 bits, a key that is not a string) is
written by the standard library, the same way.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson


def json_text(value: Any) -> str:
    """`value` as JSON, its times as orjson writes them (ISO 8601)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # A time as orjson writes it; anything else other than JSON is refused (TypeError).
        return json.dumps(value, default=datetime.isoformat)
