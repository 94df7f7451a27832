"""The formats of what callers key in: one rule each, shared by the IVR and the backend.

Pure functions, no I/O, so both sides (which must not import each other) agree on what a
CCRN, a batch number or a vehicle mark is. Lengths are the defaults of docs/call-flow.md.
Beside them: `csvfile` (the import files' shape) and `json_text` (JSON as both sides write it).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

ACCOUNT_DIGITS = 8
PASSWORD_DIGITS = (6, 12)
TOKEN_CODE_DIGITS = (6, 8)
CCRN_DIGITS = 12
BATCH_DIGITS = 10
BUNDLE_REFERENCE_DIGITS = 10
MOBILE_DIGITS = 8
MARK_NUMBER_DIGITS = (1, 4)


def is_digits(text: str) -> bool:
    """Only the ASCII digits 0-9 (str.isdigit alone also takes '²' and fullwidth '１')."""
    return text.isascii() and text.isdigit()


def luhn_check_digit(payload: str) -> str:
    """The mod-10 (Luhn) check digit for a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled: the rightmost payload digit sits next to the check digit
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return len(number) >= 2 and is_digits(number) and luhn_check_digit(number[:-1]) == number[-1]


def is_ccrn(number: str) -> bool:
    """A Customs Cargo Reference Number: 12 digits, the last a Luhn check digit."""
    return len(number) == CCRN_DIGITS and luhn_valid(number)


def is_batch_number(number: str) -> bool:
    """A batch number: 10 digits with the same check; told apart from a CCRN by length."""
    return len(number) == BATCH_DIGITS and luhn_valid(number)


def cargo_number_kind(number: str) -> str | None:
    """'ccrn', 'batch' or None when the number is neither (wrong length or check digit)."""
    if is_ccrn(number):
        return "ccrn"
    if is_batch_number(number):
        return "batch"
    return None


def new_number_with_check(digits: int) -> str:
    """A random number of `digits` digits (no leading zero) ending in its Luhn check digit."""
    payload = str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(digits - 2)
    )
    return payload + luhn_check_digit(payload)


def new_ccrn() -> str:
    return new_number_with_check(CCRN_DIGITS)


def new_batch_number() -> str:
    return new_number_with_check(BATCH_DIGITS)


def new_bundle_reference() -> str:
    return str(secrets.randbelow(9) + 1) + "".join(
        str(secrets.randbelow(10)) for _ in range(BUNDLE_REFERENCE_DIGITS - 1)
    )


def is_account_number(number: str) -> bool:
    return len(number) == ACCOUNT_DIGITS and is_digits(number)


def is_password(digits: str) -> bool:
    low, high = PASSWORD_DIGITS
    return low <= len(digits) <= high and is_digits(digits)


@dataclass(frozen=True)
class MarkRule:
    """Hong Kong registration marks: up to two letters (never I, O or Q), then 1-9999 with no
    leading zero. Configurable so personalised marks can be allowed later."""

    max_letters: int = 2
    forbidden_letters: str = "IOQ"
    max_number: int = 9999

    def valid(self, mark: str) -> bool:
        m = re.fullmatch(r"([A-Z]*)([1-9][0-9]*)", mark)
        if not m:
            return False
        letters, number = m.groups()
        return (
            len(letters) <= self.max_letters
            and not any(c in self.forbidden_letters for c in letters)
            and int(number) <= self.max_number
        )


HONG_KONG_MARKS = MarkRule()


def is_vehicle_mark(mark: str, rule: MarkRule = HONG_KONG_MARKS) -> bool:
    return rule.valid(mark)


# ITU E.161 keypad letters: a letter is keyed as its key, then its position on that key.
KEYPAD_LETTERS = {
    "2": "ABC",
    "3": "DEF",
    "4": "GHI",
    "5": "JKL",
    "6": "MNO",
    "7": "PQRS",
    "8": "TUV",
    "9": "WXYZ",
}


def keypad_letter(key: str, position: str) -> str | None:
    """The letter keyed as `key` then `position` (1-based), or None if there is none."""
    letters = KEYPAD_LETTERS.get(key, "")
    if not is_digits(position) or not 1 <= int(position) <= len(letters):
        return None
    return letters[int(position) - 1]


def keypad_keys(letter: str) -> str:
    """The two keys that enter `letter` (for scripts and tests): 'B' -> '22'."""
    for key, letters in KEYPAD_LETTERS.items():
        if letter.upper() in letters:
            return key + str(letters.index(letter.upper()) + 1)
    raise ValueError(f"not a keypad letter: {letter!r}")


def is_hong_kong_mobile(digits: str) -> bool:
    """An 8-digit Hong Kong mobile number. The numbering plan decides (phonenumbers), not a
    prefix list: 8xxx xxxx holds pagers, 2xxx and 3xxx landlines."""
    import phonenumbers

    if len(digits) != MOBILE_DIGITS or not is_digits(digits):
        return False
    number = phonenumbers.parse(digits, "HK")
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
