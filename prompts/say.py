"""Which sound files Asterisk's SAY commands play, per channel language: the Chinese grammar
for `zh_*`, the English one otherwise (tests/transcripts/11-say-files.md, Asterisk's say.c).
Covers what the IVR says: digits, marks, counts up to 9999 and hour:minute times."""

from __future__ import annotations

from datetime import datetime


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
    """SAY DATETIME with the IVR's formats: `pIM` for Chinese (下午 二 點 三十 五 分), `IMp`
    for English (two thirty five p.m.)."""
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
