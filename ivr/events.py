"""A call's events (prompts played, keys entered, backend results), kept until sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass
class EventLog:
    """Call events, kept in memory and sent to the backend in batches off the caller's path
    (a backend round trip between a barge-in and the next reading command loses keys).

    Each event of a call gets a time of its own (a microsecond later than the last, if the
    clock has not moved): the backend knows an event delivered twice by it."""

    events: list[dict[str, Any]] = field(default_factory=list)
    _last_at: datetime = field(default=datetime.min.replace(tzinfo=UTC), repr=False)

    def add(self, kind: str, name: str, duration_ms: int | None = None, **detail: Any) -> None:
        at = max(datetime.now(UTC), self._last_at + ONE_MICROSECOND)
        self._last_at = at
        self.events.append(
            {
                "at": at.isoformat(),
                "kind": kind,
                "name": name,
                "detail": detail,
                "duration_ms": duration_ms,
            }
        )

    def take(self) -> list[dict[str, Any]]:
        taken, self.events = self.events, []
        return taken
