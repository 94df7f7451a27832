"""The sound files Asterisk's SAY DIGITS / ALPHA / NUMBER / DATETIME play, per language
(`tests/transcripts/11-say-files.md`): built in each language's voice so that `SAY NUMBER 105`
on a Cantonese call says 一百零五 instead of falling back to the English core sounds."""

from __future__ import annotations

from string import ascii_lowercase

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
    return texts
