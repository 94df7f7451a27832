"""The texts of the SMS the backend sends, and the numbers it sends them to."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import phonenumbers

from backend.timezones import HONG_KONG

CODE_TEXT = "Your Road Cargo IVRS code is {code}"
BUNDLE_TEXT = "Bundled {count} to vehicle {mark}, reference {reference}, may cross from {time}."


def code_text(code: str) -> str:
    return CODE_TEXT.format(code=code)


def bundle_text(count: int, mark: str, reference: str, earliest_crossing: datetime) -> str:
    return BUNDLE_TEXT.format(
        count=f"{count} CCRN" if count == 1 else f"{count} CCRNs",
        mark=mark,
        reference=reference,
        time=earliest_crossing.astimezone(HONG_KONG).strftime("%H:%M"),
    )


@lru_cache(maxsize=4096)  # 50 µs a number (phonenumbers), twice each bundle's SMS: truckers recur
def e164(mobile: str) -> str | None:
    """A Hong Kong number, given as 8 digits or in E.164, in E.164 ("+85291234567")."""
    try:
        number = phonenumbers.parse(mobile, "HK")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def last4(mobile: str) -> str:
    """What logs and call events may show of a mobile number."""
    return mobile[-4:]
