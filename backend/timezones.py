"""Hong Kong time, for the dates that people read (token expiry, cargo expected date).

Hong Kong has kept UTC+8 without daylight saving since 1979, so a fixed offset is exact and
needs no tz database on the host.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

HONG_KONG = timezone(timedelta(hours=8), "HKT")


def hong_kong_date(moment: datetime) -> date:
    return moment.astimezone(HONG_KONG).date()
