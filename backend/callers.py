"""Failed logins per caller number (backend/login.py): the number's key, its limit, and the
refusal a throttled number hears."""

from __future__ import annotations

from datetime import datetime

import formats
from backend import limits
from backend.errors import BackendError
from backend.settings import BackendSettings

ANONYMOUS = "anonymous"


def throttled(now: datetime, until: datetime | None, limit: limits.Limit) -> BackendError:
    """The caller number is told so, and when to try again; nothing of the account."""
    minutes = max(1, -(-int(((until - now) if until else limit.block).total_seconds()) // 60))
    message = "Too many failed logins from this caller number."
    return BackendError("caller_throttled", message, detail={"retry_after_minutes": minutes})


def caller_key(caller_id: str | None) -> str:
    """The caller number a throttle counts under: its digits, a Hong Kong number without the
    country code (so +852 9123 4567 and 91234567 are one caller); "anonymous" without one."""
    digits = "".join(c for c in caller_id or "" if formats.is_digits(c))[:32]
    for prefix in ("00852", "852"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 8:
            digits = digits[len(prefix) :]
    return digits or ANONYMOUS


def caller_limit(settings: BackendSettings, caller: str) -> limits.Limit:
    """Failures a caller number may make in a window (0: not throttled)."""
    failures = settings.caller_throttle_failures
    if caller == ANONYMOUS:
        failures = settings.caller_throttle_anonymous_failures
    return limits.Limit(failures, settings.caller_throttle_window, settings.caller_throttle_period)
