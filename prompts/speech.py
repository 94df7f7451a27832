"""What a synthesiser is fed for a catalog text: the catalog stays written for people (and the
simulator prints it), while the engines get a form they read correctly."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from html import escape

from prompts.catalog import LANGUAGES

LANGUAGE_MENU = "language.menu"

# Runs of 4+ digits are phone numbers ("3669 0000"), never amounts: engines would say
# "three thousand six hundred ...", so they are read digit by digit.
_LONG_NUMBER = re.compile(r"\d{4,}")
_NUMBER_GROUPS = re.compile(r"(?<=\d{4}) (?=\d{4})")
# Upper-case acronyms (IVRS, CCRN, SMS; plural CCRNs) are spelled: espeak reads "IVRS" as a word.
_ACRONYM = re.compile(r"(?<![A-Za-z])([A-Z]{2,})(s?)(?![A-Za-z])")  # CJK counts as \w
_SENTENCE = re.compile(r"[^。.!?！？]+[。.!?！？]?")
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z' -]*[A-Za-z]|[A-Za-z]")
_CJK_PUNCTUATION = str.maketrans(
    {"。": ". ", "，": ", ", "、": ", ", "；": "; ", "：": ": ", "？": "? ", "！": "! "}
)


@dataclass(frozen=True)
class Segment:
    """A stretch of speech in one language's voice (`zh_HK`, `zh_CN` or `en`)."""

    voice: str
    text: str


def spoken(text: str) -> str:
    """The catalog text as any engine should read it."""
    text = _NUMBER_GROUPS.sub(", ", text)  # a pause between the groups of 3669 0000
    text = _LONG_NUMBER.sub(lambda m: " ".join(m.group()), text)
    # The plural as "N's": espeak says "C C R Ns" as "... N S".
    return _ACRONYM.sub(lambda m: " ".join(m.group(1)) + ("'s" if m.group(2) else ""), text)


def segments(prompt_id: str, lang: str, text: str) -> tuple[Segment, ...]:
    """`language.menu` plays before the language is known: one sentence per language, in the
    order of its keys (1 zh_HK, 2 zh_CN, 3 en), each in its own voice. Any other text is one
    segment in the call's language."""
    if prompt_id != LANGUAGE_MENU:
        return (Segment(lang, spoken(text)),)
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    if len(sentences) != len(LANGUAGES):
        raise ValueError(
            f"{LANGUAGE_MENU} ({lang}) needs {len(LANGUAGES)} sentences, one per language "
            f"in key order {', '.join(LANGUAGES)}; found {len(sentences)}"
        )
    return tuple(Segment(voice, spoken(s)) for voice, s in zip(LANGUAGES, sentences, strict=True))


def pinyin_ssml(text: str) -> str:
    """Putonghua for espeak-ng: its `cmn` dictionary misreads many simplified characters (it
    spells their pinyin in English), so Chinese is fed as numbered pinyin to the
    `cmn-latn-pinyin` voice and Latin words (FortiToken Mobile) to the English voice."""
    parts: list[str] = []
    position = 0
    for latin in _LATIN_RUN.finditer(text):
        parts.append(_pinyin_voice(text[position : latin.start()]))
        parts.append(f'<voice name="en">{escape(latin.group())}</voice>')
        position = latin.end()
    parts.append(_pinyin_voice(text[position:]))
    return "<speak>" + " ".join(p for p in parts if p) + "</speak>"


def jyutping_phonemes(text: str) -> str:
    """Cantonese for espeak-ng: its `yue` dictionary misreads 呢 (ne1 for ni1), 為, 咪 and
    more, so Chinese characters go as the Jyutping of ToJyutping's dictionary (words in
    context: 係咪 mai6), spelled in espeak's yue phoneme names inside `[[...]]` (n'i1 g'o3);
    digits, Latin words (FortiToken Mobile) and punctuation stay text for espeak to read."""
    parts: list[str] = []
    run: list[str] = []
    for char, jyutping in _jyutping()(text):
        phonemes = _espeak_yue(jyutping) if jyutping else None
        if phonemes:
            run += phonemes
            continue
        if run:
            parts.append(f" [[{' '.join(run)}]] ")
            run = []
        parts.append(char.translate(_CJK_PUNCTUATION))
    if run:
        parts.append(f" [[{' '.join(run)}]]")
    return re.sub(r" +(?=[ ,.;:?!])", "", "".join(parts)).strip()


# A Jyutping syllable: initial (ng is espeak's N), vowel part, stop or nasal coda, tone. espeak
# puts the tone after the vowels, before a p/t/k/m/n coda (j'a1t, s'aa1m), -ng staying with them.
_JYUTPING = re.compile(r"^(ng|gw|kw|[bpmfdtnlgkhwzcsj])?([aeiouy][a-z]*?)([ptkmn]?)([1-6])$")
# Words ToJyutping reads with the wrong one of two readings (checked over the whole catalog).
JYUTPING_FIXES = {"重聽": "cung4 teng1"}


def _espeak_yue(jyutping: str) -> list[str] | None:
    """espeak's yue phonemes for one character's Jyutping (None: one it has no names for)."""
    syllables = []
    for syllable in jyutping.split():
        if syllable[:-1] in ("m", "ng"):  # 唔, 五: espeak has a syllabic ng only
            syllables.append(f"'ng{syllable[-1]}")
            continue
        match = _JYUTPING.match(syllable)
        if match is None:
            return None
        initial, vowels, coda, tone = match.groups()
        initial = "N" if initial == "ng" else initial or ""
        syllables.append(f"{initial}'{vowels}{tone}{coda}")
    return syllables


@cache
def _jyutping() -> Callable[[str], list[tuple[str, str | None]]]:
    # Imported only when Cantonese is built with espeak.
    import ToJyutping

    return ToJyutping.customize(JYUTPING_FIXES).get_jyutping_list


# Words pypinyin reads with the wrong one of two readings (checked over the whole catalog).
PINYIN_FIXES = {
    "重听": [["chóng"], ["tīng"]],
    "重输": [["chóng"], ["shū"]],
    "切换": [["qiē"], ["huàn"]],
}


@cache
def _pinyin() -> Callable[..., list[str]]:
    # Imported only when Putonghua is built with espeak; pypinyin's phrase table is global.
    from pypinyin import Style, lazy_pinyin, load_phrases_dict

    load_phrases_dict(PINYIN_FIXES)
    return partial(lazy_pinyin, style=Style.TONE3, neutral_tone_with_five=True)


def _pinyin_voice(chunk: str) -> str:
    if not chunk.strip():
        return ""
    syllables = _pinyin()(chunk)
    words = " ".join(s.strip() for s in syllables if s.strip()).translate(_CJK_PUNCTUATION)
    return f'<voice name="cmn-latn-pinyin">{escape(words)}</voice>'
