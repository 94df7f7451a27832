"""The sound files that say numbers, letters and times, per language, built in each language's
voice: those Asterisk's SAY DIGITS / ALPHA / NUMBER / DATETIME play (digits/5, letters/a, ...;
`tests/transcripts/11-say-files.md`), and the IVR's own Chinese fragments (say/count-2 兩,
say/hour-14 下午兩點, say/minute-5 零五分, Putonghua say/digit-1 幺) that `prompts.say` plays
where SAY cannot say them right."""

from __future__ import annotations

from string import ascii_lowercase

from prompts.say import COUNT_FILES, HOUR_FILES, MINUTE_FILES, YAO

_ZH_DIGITS = "零一二三四五六七八九"
_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()

# Words besides numbers: a.m./p.m. and minute come from SAY DATETIME; `minute` lies at the top
# of the language folder (11-say-files.md). English also needs `oh` (9:05 is "nine oh five").
_WORDS = {
    "zh_HK": {
        "digits/hundred": "百",
        "digits/thousand": "千",
        "digits/oclock": "點",
        "digits/a-m": "上午",
        "digits/p-m": "下午",
        "minute": "分",
    },
    "zh_CN": {
        "digits/hundred": "百",
        "digits/thousand": "千",
        "digits/oclock": "点",
        "digits/a-m": "上午",
        "digits/p-m": "下午",
        "minute": "分",
    },
    "en": {
        "digits/hundred": "hundred",
        "digits/thousand": "thousand",
        "digits/oclock": "o'clock",
        "digits/a-m": "a.m.",
        "digits/p-m": "p.m.",
        "minute": "minute",
        "digits/oh": "oh",
    },
}


def _zh_number(n: int) -> str:
    """0-99 in Chinese numerals: 十一 ... 九十. 11-19 are built because SAY DATETIME's `I`
    plays digits/11 and digits/12 for the hour in the Chinese grammar too."""
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + (_ZH_DIGITS[ones] if ones else "")


# The part of the day before a 12-hour clock hour, and the word for "o'clock".
_DAY_PARTS = ((0, "凌晨"), (6, "上午"), (12, "中午"), (13, "下午"), (18, "晚上"))  # both scripts
_OCLOCK = {"zh_HK": "點", "zh_CN": "点"}
_TWO = {"zh_HK": "兩", "zh_CN": "两"}  # a quantity or an hour; 二 only in numerals (十二, 二十)


def _zh_count(n: int, lang: str) -> str:
    return _TWO[lang] if n == 2 else _zh_number(n)


def _zh_hour(hour: int, lang: str) -> str:
    part = [word for start, word in _DAY_PARTS if hour >= start][-1]
    return part + _zh_count(hour % 12 or 12, lang) + _OCLOCK[lang]


def _zh_minute(minute: int) -> str:
    return ("零" if minute < 10 else "") + _zh_number(minute) + "分"


def own_fragments(lang: str) -> dict[str, str]:
    """The IVR's own fragments of a Chinese language (none in English: SAY's files do)."""
    if not lang.startswith("zh"):
        return {}
    texts = {f"say/count-{n}": _zh_count(n, lang) for n in COUNT_FILES}
    texts.update({f"say/hour-{h}": _zh_hour(h, lang) for h in HOUR_FILES})
    texts.update({f"say/minute-{m}": _zh_minute(m) for m in MINUTE_FILES})
    if lang == "zh_CN":
        texts[YAO] = "幺"
    return texts


def _en_number(n: int) -> str:
    return _EN_ONES[n] if n < 20 else _EN_TENS[n // 10 - 2]


def numbers() -> list[int]:
    """digits/0..19 and the tens digits/20..90."""
    return list(range(20)) + list(range(20, 100, 10))


def fragment_texts(lang: str) -> dict[str, str]:
    """Sound file (Asterisk name, no extension) -> the words it says, for one language."""
    spell = _en_number if lang == "en" else _zh_number
    texts = {f"digits/{n}": spell(n) for n in numbers()}
    texts.update(_WORDS[lang])
    # Letters are said by their English names in all three languages, as Hong Kong callers
    # say registration marks; the engines read a lone capital as its name.
    texts.update({f"letters/{c}": c.upper() for c in ascii_lowercase})
    texts.update(own_fragments(lang))
    return texts
