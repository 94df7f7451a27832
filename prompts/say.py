"""Which sound files say a number, digits, a mark or a time, per language.

Two grammars live here. `slot_files` is what the IVR plays for a prompt's variables: its own
fragments, one STREAM FILE each (docs/call-flow.md, "Numbers spoken"). Chinese needs them:
Asterisk's SAY NUMBER, DIGITS and DATETIME share the `digits/N` files, so a count cannot say
兩 (兩個) where a digit string says 二, Putonghua digit strings cannot say 幺 for 1, and zh
DATETIME says "零零分" on the hour. The `say_*` functions are what Asterisk's own SAY commands
play (tests/transcripts/11-say-files.md, Asterisk's say.c): the simulator plays them for the
SAY commands it is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# --- the IVR's own fragments ----------------------------------------------------------------

COUNT_FILES = range(100)  # say/count-N: a quantity, 兩 for 2 (兩個)
MINUTE_FILES = range(1, 60)  # say/minute-M: 零五分 ... 五十九分; none on the hour
HOUR_FILES = range(24)  # say/hour-H: 下午兩點, the part of the day and the hour in one file
YAO = "say/digit-1"  # Putonghua reads 1 as yāo in digit strings (phone numbers, CCRNs, marks)
# Long numbers are read back in groups, a short silence between them, at a pace a driver can
# follow: CCRN 4-4-4, reference and batch number 3-3-4, mobile 4-4.
PAUSE, PAUSE_MS = "say/pause", 300
GROUPS = {12: (4, 4, 4), 10: (3, 3, 4), 8: (4, 4)}


def slot_files(kind: str, value: Any, lang: str, zone: str | None = None) -> list[str]:
    """The files for one variable of kind `key`, `digits`, `alpha`, `number` or `datetime`
    (prompts.catalog.SLOT_SAY) in `lang`; a time is said in `zone` (default: as given)."""
    if kind == "key":  # a key to press, said as the prompt's own words say it (請按 1: 一)
        return [f"digits/{d}" for d in str(value) if d.isdigit()]
    if kind == "digits":
        return digit_files(str(value), lang)
    if kind == "alpha":
        return [f"letters/{c.lower()}" if c.isalpha() else _digit(c, lang) for c in str(value)]
    if kind == "number":
        return count_files(int(value), lang)
    moment: datetime = value
    return time_files(moment.astimezone(ZoneInfo(zone)) if zone else moment, lang)


def digit_files(digits: str, lang: str) -> list[str]:
    digits = "".join(d for d in digits if d.isdigit())
    files: list[str] = []
    start = 0
    for size in GROUPS.get(len(digits), (len(digits),)):
        files += ([PAUSE] if files else []) + [
            _digit(d, lang) for d in digits[start : start + size]
        ]
        start += size
    return files


def _digit(d: str, lang: str) -> str:
    return YAO if d == "1" and lang == "zh_CN" else f"digits/{d}"


def count_files(n: int, lang: str) -> list[str]:
    """A quantity: 2 兩個, 12 十二個, 102 一百零二, 200 兩百; up to 9999, then digit by digit."""
    if not lang.startswith("zh"):
        return _en_number(n) if n < 10_000 else digit_files(str(n), "en")
    if n < 100:
        return [f"say/count-{n}"]
    if n >= 10_000:
        return digit_files(str(n), lang)
    size, word = (1000, "thousand") if n >= 1000 else (100, "hundred")
    head, rest = divmod(n, size)
    files = [f"say/count-{head}", f"digits/{word}"]  # 兩百, 兩千
    if rest >= 100:
        return files + count_files(rest, lang)
    if rest >= 10:
        zero = ["digits/0"] if size == 1000 else []  # 一千零五十; 一百五十
        one = ["digits/1"] if rest < 20 else []  # 一百一十二, not 一百十二
        return files + zero + one + [f"say/count-{rest}"]
    # A units digit after 零 is a numeral, not a quantity: 一百零二, never 一百零兩.
    return files + (["digits/0", f"digits/{rest}"] if rest else [])


def time_files(moment: datetime, lang: str) -> list[str]:
    """Hour and minute: 下午兩點 (on the hour), 下午兩點 零五分, 上午九點 三十分;
    English "two p.m.", "two oh five p.m.", "nine thirty a.m."."""
    if lang.startswith("zh"):
        minute = [f"say/minute-{moment.minute}"] if moment.minute else []
        return [f"say/hour-{moment.hour}", *minute]
    hour = f"digits/{moment.hour % 12 or 12}"
    half = "digits/p-m" if moment.hour >= 12 else "digits/a-m"
    if moment.minute == 0:
        return [hour, half]
    if moment.minute < 10:
        return [hour, "digits/oh", f"digits/{moment.minute}", half]
    return [hour, *_en_number(moment.minute), half]


# --- what Asterisk's SAY commands play ------------------------------------------------------


def say_digits(digits: str) -> list[str]:
    return [f"digits/{d}" for d in digits if d.isdigit()]


def say_alpha(text: str) -> list[str]:
    return [f"digits/{c}" if c.isdigit() else f"letters/{c.lower()}" for c in text if c.isalnum()]


def say_number(n: int, lang: str) -> list[str]:
    return _zh_number(n) if lang.startswith("zh") else _en_number(n)


def _zh_number(n: int) -> list[str]:
    """105: 1 hundred 0 5 (一百零五); 2029: 2 thousand 0 20 9 (二千零二十九)."""
    for size, word in ((1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            files = [f"digits/{head}", f"digits/{word}"]
            if rest:
                files += (["digits/0"] if rest < size // 10 else []) + _zh_number(rest)
            return files
    tens, ones = divmod(n, 10)
    if n < 10 or not ones:
        return [f"digits/{n}"]
    return [f"digits/{tens * 10}", f"digits/{ones}"]


def _en_number(n: int) -> list[str]:
    for size, word in ((1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return [*_en_number(head), f"digits/{word}", *(_en_number(rest) if rest else [])]
    if n < 20 or n % 10 == 0:
        return [f"digits/{n}"]
    return [f"digits/{n - n % 10}", f"digits/{n % 10}"]


def say_time(moment: datetime, lang: str) -> list[str]:
    """SAY DATETIME with the formats `pIM` for Chinese (下午 二 點 三十 五 分), `IMp` for
    English (two thirty five p.m.)."""
    hour12 = f"digits/{moment.hour % 12 or 12}"
    half = "digits/p-m" if moment.hour >= 12 else "digits/a-m"
    minute = moment.minute
    if lang.startswith("zh"):
        if minute < 10:
            minutes = ["digits/0", f"digits/{minute}"]
        else:
            minutes = _zh_number(minute)
        return [half, hour12, "digits/oclock", *minutes, "minute"]
    if minute == 0:
        minutes = ["digits/oclock"]
    elif minute < 10:
        minutes = ["digits/oh", f"digits/{minute}"]
    else:
        minutes = _en_number(minute)
    return [hour12, *minutes, half]
