"""The console's seeding, for its tests and its screenshots: ended calls written straight into
the database, and a real WAV recording as MixMonitor writes them."""

from __future__ import annotations

import math
import struct
import wave
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from backend.database import Database
from backend.models import Call, CallEvent, Recording


async def seed_calls(
    db: Database,
    count: int,
    start: datetime,
    every: timedelta = timedelta(minutes=1),
    **columns: Any,
) -> list[int]:
    """`count` ended calls, one every `every` from `start`; returns their ids, oldest first."""
    calls = [
        Call(
            uniqueid=f"seed-{start.timestamp():.0f}-{i}-{columns.get('hotline', '')}",
            hotline=columns.get("hotline", "39023333"),
            caller_id=columns.get("caller_id", "85291234567"),
            channel=columns.get("channel", f"PJSIP/trunk-{i:08x}"),
            language=columns.get("language", "zh_HK"),
            started_at=start + i * every,
            ended_at=None if columns.get("live") else start + i * every + timedelta(seconds=95),
            outcome=None if columns.get("live") else columns.get("outcome", "completed"),
            last_stage=columns.get("last_stage", "goodbye"),
            account_number=columns.get("account_number"),
        )
        for i in range(count)
    ]
    async with db.sessions.begin() as session:
        session.add_all(calls)
        await session.flush()
        if columns.get("events"):
            session.add_all(
                CallEvent(call_id=c.id, at=c.started_at, kind="stage", name="welcome", detail={})
                for c in calls
            )
        if columns.get("recorded"):
            session.add_all(
                Recording(call_id=c.id, file_name=f"{c.uniqueid}.wav", size_bytes=1, found_at=start)
                for c in calls
            )
    return [c.id for c in calls]


def write_tone_wav(path: Path, seconds: float = 3.0, rate: int = 8000) -> Path:
    """A real 8 kHz mono WAV (a 440 Hz tone), as MixMonitor writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path
