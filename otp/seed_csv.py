"""The OATH seed CSV (docs/design.md, "seed file"; the format is described in seedfile.py), read
row by row: every bad row reported with its line number."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date

from formats.csvfile import read_rows
from otp import OtpType
from otp.seed_records import (
    SeedFileError,
    SeedRecord,
    checked_key_length,
    make_record,
    repeated_serials,
    whole_number,
)

CSV_HEADER = ("serial", "key", "type", "digits", "period", "expiry")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def read_seed_csv(text: str) -> list[SeedRecord]:
    """Every row of a seed CSV, or SeedFileError listing every bad row by its line number."""
    records, problems = read_rows(text, CSV_HEADER, _csv_record, "tokens")
    problems.extend(repeated_serials(records))
    if problems:
        raise SeedFileError(problems)
    return records


def _csv_record(where: str, cells: list[str]) -> SeedRecord:
    if len(cells) != len(CSV_HEADER):
        raise ValueError(f"{len(cells)} fields, expected {len(CSV_HEADER)}")
    serial, key, type_, digits, period, expiry = cells
    otp_type = _otp_type(type_)
    return make_record(
        where,
        serial,
        _key(key),
        otp_type,
        whole_number(digits, "digits"),
        None if otp_type == "hotp" else whole_number(period, "period"),  # hotp counts, no clock
        _expiry(expiry),
    )


def _key(text: str) -> bytes:
    """The seed bytes of `key`: hex, or base32 after `base32:`. Messages never quote it."""
    if text[:7].lower() == "base32:":
        b32 = re.sub(r"[\s-]", "", text[7:]).upper().rstrip("=")
        if not b32 or not re.fullmatch(r"[A-Z2-7]+", b32):
            raise ValueError("key: not base32 (A-Z, 2-7) after base32:")
        try:
            raw = base64.b32decode(b32 + "=" * (-len(b32) % 8))
        except binascii.Error:
            raise ValueError("key: not valid base32 (wrong length)") from None
    else:
        if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", text):
            raise ValueError("key: not hex (an even number of 0-9, a-f), nor base32:KEY")
        raw = bytes.fromhex(text)
    return checked_key_length(raw)


def _otp_type(text: str) -> OtpType:
    value = text.lower()
    if value == "totp":
        return "totp"
    if value == "hotp":
        return "hotp"
    raise ValueError("type: totp or hotp")


def _expiry(text: str) -> date | None:
    if not text:
        return None
    if not ISO_DATE.fullmatch(text):
        raise ValueError("expiry: YYYY-MM-DD or empty")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("expiry: not a date") from None
