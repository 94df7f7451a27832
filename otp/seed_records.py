"""What every seed file gives, CSV or PSKC: one `SeedRecord` per token, checked alike, and
`SeedFileError` listing every problem (never quoting a key)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import date

from otp import OtpType, TokenProfile

MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 64
MAX_ERRORS = 20  # reported at once; the rest are summed up
SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True)
class SeedRecord:
    """One token of a seed file. The seed never shows in a repr (logs, tracebacks)."""

    where: str  # "line 3" or "KeyPackage 2": for messages about this token
    serial: str
    seed_base32: str = field(repr=False)
    type: OtpType
    digits: int
    period: int | None  # None for hotp
    expires_on: date | None
    counter: int | None = None  # hotp only, when the file gives it: the next press's counter


class SeedFileError(ValueError):
    """The file cannot be imported; `problems` lists each one, with its line."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_ERRORS]
        if len(problems) > MAX_ERRORS:
            shown.append(f"... and {len(problems) - MAX_ERRORS} more")
        super().__init__("\n".join(shown))
        self.problems = problems


def make_record(
    where: str,
    serial: str,
    raw_key: bytes,
    otp_type: OtpType,
    digits: int,
    period: int | None,
    expires_on: date | None,
    counter: int | None = None,
) -> SeedRecord:
    if not SERIAL.fullmatch(serial):
        raise ValueError("serial: 1 to 32 letters, digits, '.', '_' or '-'")
    if otp_type == "totp" and period is None:
        raise ValueError("period: required for totp")
    TokenProfile("hardware", digits=digits, period=period, type=otp_type)  # raises on others
    seed = base64.b32encode(raw_key).decode().rstrip("=")
    return SeedRecord(where, serial, seed, otp_type, digits, period, expires_on, counter)


def repeated_serials(records: list[SeedRecord]) -> list[str]:
    first: dict[str, str] = {}
    problems = []
    for record in records:
        key = record.serial.upper()
        if key in first:
            problems.append(f"{record.where}: serial {record.serial} repeats {first[key]}")
        else:
            first[key] = record.where
    return problems


def checked_key_length(raw: bytes) -> bytes:
    if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
        raise ValueError(
            f"key: {len(raw) * 8} bits; a seed has {MIN_KEY_BYTES * 8} to {MAX_KEY_BYTES * 8}"
        )
    return raw


def is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def whole_number(text: str, name: str) -> int:
    if not is_number(text) or len(text) > 6:
        raise ValueError(f"{name}: not a number")
    return int(text)
