"""The prompt catalog against docs/call-flow.md, and the prompts build: offline with espeak-ng, and
through gTTS against a local stand-in of Google Translate's endpoint (no network in tests)."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from bench.bench_caller_time import ROWS, Stack, longest_silence
from prompts.audio import load_sound
from prompts.build import build, main, plan
from prompts.catalog import LANGUAGES, Catalog, Slot, Sound, default_catalog
from prompts.engines import Espeak
from prompts.fragments import fragment_texts
from prompts.manifest import Manifest, durations_ms
from prompts.say import PAUSE, say_alpha, say_digits, say_number, say_time, slot_files
from prompts.speech import Segment, jyutping_phonemes, pinyin_ssml, segments, spoken
from tests.support.stored import stored_bundles
from tests.support.truckers import MakeTrucker

CALL_FLOW = Path(__file__).resolve().parents[1] / "docs" / "call-flow.md"
# The files SAY DIGITS / ALPHA / NUMBER / DATETIME play (tests/transcripts/11-say-files.md).
SAY_FILES = (
    [f"digits/{n}" for n in [*range(10), *range(10, 100, 10)]]
    + [f"digits/{w}" for w in ("hundred", "thousand", "oclock", "a-m", "p-m")]
    + ["minute"]
    + [f"letters/{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
)
RMS_FLOOR_DB = -35.0


def call_flow_ids() -> list[str]:
    assert CALL_FLOW.is_file(), f"docs/call-flow.md not found at {CALL_FLOW}"
    return re.findall(r"^\|\s*`([a-z_]+(?:\.[a-z_]+)*)`\s*\|", CALL_FLOW.read_text(), re.M)


def sound_parts(catalog: Catalog, lang: str) -> list[Sound]:
    return [p for i in catalog.ids() for p in catalog.parts(i, lang) if isinstance(p, Sound)]


# -- the catalog ---------------------------------------------------------------------------


def test_every_call_flow_prompt_id_has_a_text_in_every_language() -> None:
    ids = call_flow_ids()
    assert len(ids) > 40 and {"language.menu", "welcome", "call.goodbye"} <= set(ids)
    prompts = default_catalog().prompts
    missing = [
        f"{i} ({lang})"
        for i in ids
        for lang in LANGUAGES
        if not (prompts.get(i) or {}).get(lang, "").strip()
    ]
    assert not missing, f"prompt texts missing from catalog.yaml: {missing}"


def test_translations_keep_the_variables_of_the_english_text() -> None:
    catalog = default_catalog()
    for prompt_id in catalog.ids():
        english = re.findall(r"\{\w+\}", catalog.text(prompt_id, "en"))
        for lang in LANGUAGES:
            assert sorted(re.findall(r"\{\w+\}", catalog.text(prompt_id, lang))) == sorted(
                english
            ), f"{prompt_id} ({lang})"


def test_no_sound_part_is_only_punctuation() -> None:
    catalog = default_catalog()
    empty = [
        f"{p.file} ({lang})"
        for lang in LANGUAGES
        for p in sound_parts(catalog, lang)
        if not re.search(r"\w", p.text)
    ]
    assert not empty, f"parts with nothing to say (move the punctuation): {empty}"


# What a caller must not hear: app jargon (綁定) where the customs' briefing says 捆綁 and
# 海關貨物編號, 二 where a count or an hour says 兩 (兩個, 兩點), "zero zero minutes" on the hour,
# written Chinese in Cantonese, Hong Kong written terms in Putonghua.
NOT_SAID = {
    "zh_HK": ["綁定", "绑定", "CCRN", "請於", "此", "(?<!應)該"],
    "zh_CN": ["綁定", "绑定", "CCRN", "细阅", "条款及细则", "资料"],
}
WRONG_TWO = r"(?<![一二三四五六七八九十百千零\d])(二|2 ?)[個个點点]|零零分|00 ?分"


@pytest.mark.parametrize("lang", ["zh_HK", "zh_CN"])
def test_chinese_prompts_use_the_customs_words_and_spoken_counts(lang: str) -> None:
    catalog = default_catalog()
    said = {i: catalog.text(i, lang) for i in catalog.ids()}
    wrong = [
        f"{i}: {pattern}"
        for i, text in said.items()
        for pattern in [*NOT_SAID[lang], WRONG_TWO]
        if re.search(pattern, text)
    ]
    assert not wrong, f"{lang} prompts with words a caller should not hear: {wrong}"
    assert any("捆綁" in t or "捆绑" in t for t in said.values())
    assert any("海關貨物編號" in t or "海关货物编号" in t for t in said.values())


def test_the_banned_words_check_catches_them() -> None:
    for text in ("請輸入綁定嘅 CCRN", "已捆綁二個", "下午二點", "兩點零零分", "请细阅条款及细则"):
        lang = "zh_CN" if "细" in text else "zh_HK"
        assert any(re.search(p, text) for p in [*NOT_SAID[lang], WRONG_TWO]), text
    assert not re.search(WRONG_TWO, "十二個 兩個 下午兩點 二十二點")


def test_engines_read_phone_numbers_digit_by_digit_and_spell_acronyms() -> None:
    assert spoken("Call 3669 0000 about 30 CCRNs.") == "Call 3 6 6 9, 0 0 0 0 about 30 C C R N's."
    assert "chong2 ting1" in pinyin_ssml("重听请按 1。")  # pypinyin alone says zhong4
    assert '<voice name="en">FortiToken Mobile</voice>' in pinyin_ssml("令牌或 FortiToken Mobile")


def test_every_chong_of_the_putonghua_prompts_is_said_again_not_heavy() -> None:
    """重 in the prompts always means "again" (重听, 重新, 重输): chong2, which pypinyin alone
    misreads as zhong4 in some words."""
    texts = [t["zh_CN"] for t in default_catalog().prompts.values() if "重" in t.get("zh_CN", "")]
    assert len(texts) >= 4
    for text in texts:
        said = pinyin_ssml(text)
        assert text.count("重") == said.count("chong2") and "zhong4" not in said, (text, said)


# -- Cantonese read from Jyutping ------------------------------------------------------------


def espeak_phonemes(voice_input: tuple[list[str], str]) -> str:
    """The phonemes espeak-ng will speak for an input (`-x -q`: print them, say nothing)."""
    options, text = voice_input
    done = subprocess.run(
        ["espeak-ng", *options, "-x", "-q", text], capture_output=True, text=True, check=True
    )
    return done.stdout


def cantonese_input(prompt_id: str) -> tuple[list[str], str]:
    (segment,) = segments(prompt_id, "zh_HK", default_catalog().text(prompt_id, "zh_HK"))
    return Espeak().voice_input(segment)


def test_cantonese_prompts_are_fed_to_espeak_as_jyutping_so_ni_is_said_ni1() -> None:
    text = default_catalog().text("register.mobile_invalid", "zh_HK")
    assert text.startswith("呢個")
    assert "n'e1" in espeak_phonemes((["-v", "yue"], text))  # espeak's own dictionary: ne1
    said = espeak_phonemes(cantonese_input("register.mobile_invalid"))
    assert said.split()[:2] == ["n'i1_|", "g'o3_|"] and "n'e1" not in said
    # 係咪 mai6 (espeak alone: m'i1), 為 wai6 (espeak: w'ai4), 重聽 cung4 (ToJyutping: cung5).
    assert "m'ai6" in espeak_phonemes(cantonese_input("unbundle.confirm_all"))
    assert "w'ai6" in espeak_phonemes((["-v", "yue"], jyutping_phonemes("因為")))
    assert "c'ung4_| t'eng1" in espeak_phonemes(cantonese_input("bundle.next"))


def test_every_cantonese_character_goes_as_phonemes_and_the_rest_as_text() -> None:
    catalog = default_catalog()
    for prompt_id in catalog.ids():
        for segment in segments(prompt_id, "zh_HK", catalog.text(prompt_id, "zh_HK")):
            if segment.voice == "zh_HK":
                fed = Espeak().voice_input(segment)[1]
                left = re.sub(r"\[\[[^]]*\]\]", "", fed)
                assert not re.search(r"[\u4e00-\u9fff]", left), (prompt_id, fed)
    fed = jyutping_phonemes(spoken("唔該打 3669 0000 搵 FortiToken Mobile。"))
    assert fed == "[['ng4 g'oi1 d'aa2]] 3 6 6 9, 0 0 0 0 [[w'a2n]] FortiToken Mobile."


def test_phonemes_of_a_character_espeak_reads_right_give_the_same_recording(
    tmp_path: Path,
) -> None:
    """The NOTES' check: what the dictionary says alike is spoken byte for byte alike."""
    for name, text in (
        ("text", "多謝來電，再見。"),
        ("phonemes", jyutping_phonemes("多謝來電，再見。")),
    ):
        subprocess.run(
            ["espeak-ng", "-v", "yue", "-w", str(tmp_path / f"{name}.wav"), text], check=True
        )
    assert jyutping_phonemes("多謝來電，再見。") == "[[d'o1 z'e6 l'oi4 d'i6n]], [[z'oi3 g'i3n]]."
    assert (tmp_path / "text.wav").read_bytes() == (tmp_path / "phonemes.wav").read_bytes()
    assert Espeak().voice_input(Segment("zh_HK", "你好"))[1] == "[[n'ei5 h'ou2]]"


# -- the offline build ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cantonese(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every language built offline once through the CLI; the checks of the files themselves
    look at Cantonese, the default language."""
    out = tmp_path_factory.mktemp("sounds")
    assert main(["--engine", "espeak", "--out", str(out)]) == 0
    return out


def built_files(out: Path, lang: str) -> list[Path]:
    return sorted((out / lang).rglob("*.wav"))


def test_offline_build_has_every_prompt_part_and_say_fragment(cantonese: Path) -> None:
    expected = {p.file for p in sound_parts(default_catalog(), "zh_HK")}
    expected |= set(SAY_FILES) | set(fragment_texts("zh_HK")) | {PAUSE}
    missing = [f for f in sorted(expected) if not (cantonese / "zh_HK" / f"{f}.wav").is_file()]
    assert not missing
    assert len(built_files(cantonese, "zh_HK")) == len(expected)


def test_built_files_are_8khz_mono_16bit_pcm_wavs(cantonese: Path) -> None:
    files = [str(f) for f in built_files(cantonese, "zh_HK")]
    for option, want in [
        ("-t", "wav"),
        ("-r", "8000"),
        ("-c", "1"),
        ("-b", "16"),
        ("-e", "Signed Integer PCM"),
    ]:
        lines = subprocess.run(
            ["soxi", option, *files], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert len(lines) == len(files) and set(lines) == {want}, option


def test_no_built_file_is_silent_or_empty(cantonese: Path) -> None:
    pause = cantonese / "zh_HK" / f"{PAUSE}.wav"  # silent on purpose: between digit groups
    assert subprocess.run(["soxi", "-D", str(pause)], capture_output=True, text=True).stdout.strip()
    for path in set(built_files(cantonese, "zh_HK")) - {pause}:
        stats = subprocess.run(
            ["sox", str(path), "-n", "stats"], capture_output=True, text=True, check=True
        ).stderr
        rms = float(re.search(r"RMS lev dB\s+(\S+)", stats).group(1))  # type: ignore[union-attr]
        length = float(re.search(r"Length s\s+(\S+)", stats).group(1))  # type: ignore[union-attr]
        assert rms > RMS_FLOOR_DB and length > 0.2, f"{path}: RMS {rms} dB, {length} s"


def test_manifest_gives_every_file_its_length_in_ms(cantonese: Path) -> None:
    durations = durations_ms(cantonese, "zh_HK")
    files = built_files(cantonese, "zh_HK")
    seconds = subprocess.run(
        ["soxi", "-D", *map(str, files)], capture_output=True, text=True, check=True
    ).stdout.split()
    for path, length in zip(files, seconds, strict=False):
        file = path.relative_to(cantonese / "zh_HK").with_suffix("").as_posix()
        assert abs(durations[file] - float(length) * 1000) <= 1, file
    assert len(durations) == len(files)
    assert durations["ivrs/language/menu"] > durations["ivrs/welcome"] > durations["digits/5"]


def test_language_menu_is_one_recording_of_three_voices_for_every_language_folder() -> None:
    jobs, invalid = plan(default_catalog(), LANGUAGES)
    menu = [job for job in jobs if any(k.endswith("/ivrs/language/menu") for k in job.targets)]
    assert not invalid and len(menu) == 1
    assert menu[0].targets == tuple(f"{lang}/ivrs/language/menu" for lang in LANGUAGES)
    assert [s.voice for s in menu[0].segments] == list(LANGUAGES)
    assert menu[0].segments[2].text == "For English, press 3."


def test_a_second_build_with_no_change_rebuilds_nothing(cantonese: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in built_files(cantonese, "zh_HK")}
    report = build("espeak", ["zh_HK"], cantonese)
    assert report.ok and report.built == [] and len(report.skipped) == len(before)
    assert {p: p.stat().st_mtime_ns for p in built_files(cantonese, "zh_HK")} == before


def test_a_changed_text_rebuilds_only_its_file(cantonese: Path, tmp_path: Path) -> None:
    out = tmp_path / "sounds"
    shutil.copytree(cantonese, out)
    prompts = copy.deepcopy(default_catalog().prompts)
    prompts["welcome"]["zh_HK"] = "歡迎致電道路貨物捆綁服務。"
    report = build("espeak", ["zh_HK"], out, catalog=Catalog(prompts))
    assert report.built == ["zh_HK/ivrs/welcome"]


def test_a_file_that_cannot_be_spoken_is_reported_and_the_rest_built(tmp_path: Path) -> None:
    catalog = Catalog({"welcome": {"en": "Welcome."}, "call.goodbye": {"en": "…"}})
    report = build("espeak", ["en"], tmp_path, catalog=catalog)
    assert list(report.failed) == ["en/ivrs/call/goodbye"]
    assert "en/ivrs/welcome" in report.built and "en/digits/5" in report.built
    assert "FAILED en/ivrs/call/goodbye" in report.summary()


def test_load_sound_prefers_the_call_language_then_english(tmp_path: Path) -> None:
    for file in ("zh_HK/digits/5", "en/digits/5", "en/ivrs/welcome"):
        (tmp_path / f"{file}.wav").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{file}.wav").write_bytes(b"RIFF")
    assert load_sound(tmp_path, "zh_HK", "digits/5") == tmp_path / "zh_HK/digits/5.wav"
    assert load_sound(tmp_path, "zh_HK", "ivrs/welcome") == tmp_path / "en/ivrs/welcome.wav"
    assert load_sound(tmp_path, "zh_CN", "ivrs/goodbye") is None


# -- gTTS, against a stand-in of translate.google.com -----------------------------------------


class GoogleStandIn(BaseHTTPRequestHandler):
    """Answers `_/TranslateWebserverUi/data/batchexecute` as Google does: an RPC `jQ1olc`
    reply carrying base64 MP3."""

    mp3: bytes = b""
    asked: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        rpc = json.loads(parse_qs(body)["f.req"][0])[0][0]
        text, lang = json.loads(rpc[1])[:2]
        self.asked.append((lang, text))
        if self.path != "/_/TranslateWebserverUi/data/batchexecute" or rpc[0] != "jQ1olc":
            self.send_error(404)
            return
        audio = json.dumps([base64.b64encode(self.mp3).decode()])
        reply = json.dumps(
            [["wrb.fr", "jQ1olc", audio, None, None, None, "generic"]], separators=(",", ":")
        )
        payload = f")]}}'\n\n{len(reply)}\n{reply}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[GoogleStandIn]]:
    tone = tmp_path / "tone.mp3"  # a small valid MP3: a rising tone, 0.8 s
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "24000",
            "-c",
            "1",
            str(tone),
            "synth",
            "0.8",
            "sine",
            "300:1200",
            "gain",
            "-6",
        ],
        check=True,
    )
    handler = type("Google", (GoogleStandIn,), {"mp3": tone.read_bytes(), "asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    point_gtts_at(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    yield handler
    server.shutdown()
    server.server_close()


def point_gtts_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """gTTS builds its URL in `gtts.utils._translate_url` (imported into `gtts.tts`) from a
    template local to that function; its only public knob is the Google `tld`. So the stand-in
    replaces the function, and proxies from the environment are cleared."""
    import gtts.tts

    monkeypatch.setattr(gtts.tts, "_translate_url", lambda tld="com", path="": f"{base}/{path}")
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


def unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_gtts_at(monkeypatch, f"http://127.0.0.1:{port}")


SMALL = Catalog(
    {
        "welcome": default_catalog().prompts["welcome"],
        "language.menu": default_catalog().prompts["language.menu"],
    }
)


def test_gtts_speaks_cantonese_as_yue_and_its_recordings_are_kept_offline(
    google: type[GoogleStandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = build("gtts", ["zh_HK", "en"], tmp_path, catalog=SMALL)
    assert report.ok and not report.fell_back and report.engine == "gtts"
    assert ("yue", "歡迎使用道路貨物捆綁服務。") in google.asked
    assert ("en", "Welcome to the Road Cargo bundling service.") in google.asked
    assert {"yue", "zh-CN", "en"} <= {lang for lang, _ in google.asked}  # language.menu
    entries = Manifest.load(tmp_path).entries
    assert {e.engine for e in entries.values()} == {"gtts", "sox"}  # sox: the pauses
    assert entries["zh_HK/ivrs/welcome"].ms > 700
    rate = subprocess.run(
        ["soxi", "-r", str(tmp_path / "zh_HK/ivrs/welcome.wav")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert rate == "8000"

    unreachable(monkeypatch)
    assert build("auto", ["zh_HK", "en"], tmp_path, catalog=SMALL).built == []
    rebuilt = build("espeak", ["zh_HK"], tmp_path, catalog=SMALL)  # the engine changed
    assert rebuilt.skipped == [f"zh_HK/{PAUSE}"] and len(rebuilt.built) > 40


def test_gtts_unreachable_falls_back_to_espeak_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable(monkeypatch)
    report = build("gtts", ["en"], tmp_path, catalog=SMALL)
    assert report.ok and "en/ivrs/welcome" in report.fell_back
    assert {e.engine for e in Manifest.load(tmp_path).entries.values()} == {"espeak", "sox"}
    assert build("gtts", ["en"], tmp_path, catalog=SMALL).built  # gTTS is tried again


def test_auto_builds_offline_when_gtts_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable(monkeypatch)
    report = build("auto", ["en"], tmp_path, catalog=SMALL)
    assert report.ok and report.engine == "espeak" and not report.fell_back
    assert "gTTS unreachable" in report.summary()


# -- SAY fragments --------------------------------------------------------------------------


def test_say_plays_the_files_asterisk_played_in_the_captures() -> None:
    assert say_number(105, "zh_HK") == ["digits/1", "digits/hundred", "digits/0", "digits/5"]
    assert say_number(105, "en") == ["digits/1", "digits/hundred", "digits/5"]
    assert say_number(2029, "zh_CN") == [
        "digits/2",
        "digits/thousand",
        "digits/0",
        "digits/20",
        "digits/9",
    ]
    assert say_number(42, "zh_HK") == say_number(42, "en") == ["digits/40", "digits/2"]
    assert say_alpha("AB12") == ["letters/a", "letters/b", "digits/1", "digits/2"]
    assert say_time(datetime(2029, 1, 1, 13, 30), "zh_HK") == [
        "digits/p-m",
        "digits/1",
        "digits/oclock",
        "digits/30",
        "minute",
    ]
    assert say_time(datetime(2029, 1, 1, 16, 0), "en") == [
        "digits/4",
        "digits/oclock",
        "digits/p-m",
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_fragments_cover_every_count_and_time_of_day(lang: str) -> None:
    built = set(fragment_texts(lang))
    played = {f for n in range(10_000) for f in say_number(n, lang)}
    played |= {
        f for m in range(24 * 60) for f in say_time(datetime(2029, 1, 1, m // 60, m % 60), lang)
    }
    played |= set(say_digits("0123456789")) | set(say_alpha("abcdefghijklmnopqrstuvwxyz"))
    # What the IVR streams itself (prompts/say.py's slot_files).
    played |= {f for n in range(10_000) for f in slot_files("number", n, lang)}
    played |= {
        f
        for m in range(24 * 60)
        for f in slot_files("datetime", datetime(2029, 1, 1, m // 60, m % 60), lang)
    }
    played |= set(slot_files("alpha", "abcdefghijklmnopqrstuvwxyz0123456789", lang))
    assert played <= built, sorted(played - built)


# -- the IVR's own fragments: counts, times and digit strings said as people say them ---------

CCRN = "112345678901"


def grouped(files: list[str]) -> list[str]:
    """A CCRN read back 4-4-4, a pause between the groups."""
    return [*files[:4], PAUSE, *files[4:8], PAUSE, *files[8:]]


TIMES = {"14:00": datetime(2029, 4, 1, 14, 0), "14:05": datetime(2029, 4, 1, 14, 5)}
TIMES["09:30"] = datetime(2029, 4, 1, 9, 30)
SAID = {
    "zh_HK": {
        2: ["say/count-2"],  # 兩
        12: ["say/count-12"],
        50: ["say/count-50"],
        "14:00": ["say/hour-14"],  # 下午兩點, no 零零分
        "14:05": ["say/hour-14", "say/minute-5"],  # 零五分
        "09:30": ["say/hour-9", "say/minute-30"],
        CCRN: grouped([f"digits/{d}" for d in CCRN]),
    },
    "zh_CN": {
        2: ["say/count-2"],  # 两
        12: ["say/count-12"],
        50: ["say/count-50"],
        "14:00": ["say/hour-14"],
        "14:05": ["say/hour-14", "say/minute-5"],
        "09:30": ["say/hour-9", "say/minute-30"],
        CCRN: grouped(["say/digit-1" if d == "1" else f"digits/{d}" for d in CCRN]),  # 幺
    },
    "en": {
        2: ["digits/2"],
        12: ["digits/12"],
        50: ["digits/50"],
        "14:00": ["digits/2", "digits/p-m"],
        "14:05": ["digits/2", "digits/oh", "digits/5", "digits/p-m"],
        "09:30": ["digits/9", "digits/30", "digits/a-m"],
        CCRN: grouped([f"digits/{d}" for d in CCRN]),
    },
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_counts_times_and_digit_strings_are_played_as_these_files(lang: str) -> None:
    for what, files in SAID[lang].items():
        if isinstance(what, int):
            assert slot_files("number", what, lang) == files, what
        elif what in TIMES:
            assert slot_files("datetime", TIMES[what], lang) == files, what
        else:
            assert slot_files("digits", what, lang) == files, what


@pytest.mark.parametrize("lang", ["zh_HK", "zh_CN"])
def test_chinese_fragments_say_two_as_a_count_and_the_hour_with_its_part_of_the_day(
    lang: str,
) -> None:
    texts = fragment_texts(lang)
    two, dot = ("兩", "點") if lang == "zh_HK" else ("两", "点")
    assert texts["say/count-2"] == two and texts["say/count-12"] == "十二"
    assert texts["say/hour-14"] == f"下午{two}{dot}" and texts["say/hour-9"] == f"上午九{dot}"
    assert texts["say/minute-5"] == "零五分" and texts["say/minute-30"] == "三十分"
    assert texts["digits/2"] == "二"  # a digit string's 2 stays 二
    assert (texts.get("say/digit-1") == "幺") == (lang == "zh_CN")
    said = lambda n: "".join(texts[f] for f in slot_files("number", n, lang))  # noqa: E731
    assert [said(n) for n in (102, 112, 200, 2002)] == [
        "一百零二",
        "一百一十二",
        f"{two}百",
        f"{two}千零二",
    ]


def test_a_key_to_press_is_said_as_a_digit_and_a_count_as_a_quantity() -> None:
    catalog = default_catalog()

    def count(prompt_id: str) -> Slot:
        parts = catalog.parts(prompt_id, "zh_HK")
        return next(p for p in parts if isinstance(p, Slot) and p.name == "count")

    key = count("vehicle.recent")
    assert slot_files(key.say, 2, "zh_HK") == ["digits/2"]  # 請按二
    assert slot_files(key.say, 1, "zh_CN") == ["digits/1"]  # 请按一, as the text says it
    assert slot_files(count("enquiry.result").say, 2, "zh_HK") == ["say/count-2"]  # 兩個


async def test_a_call_plays_its_variables_as_stream_files_of_built_fragments(
    cantonese: Path, make_trucker: MakeTrucker, phone: Any, db: Any
) -> None:
    """Through the real FastAGI server: numbers and times are no SAY command, and every file
    streamed is built in the call's language (Asterisk would fall back to English silently)."""
    for key, lang in (("1", "zh_HK"), ("2", "zh_CN"), ("3", "en")):
        trucker = await make_trucker()
        keys = trucker.bundle_keys().replace("3", key, 1)
        record = await phone(keys, trucker, sounds_dir=cantonese)
        assert record.language == lang and "bundle.submitted" in record.prompt_ids
        commands = [e.command for e in record.exchanges]
        # SAY ALPHA of a keyed letter (the flow's echo) plays letters/x, built in every language.
        says = [c for c in commands if c.startswith("SAY ")]
        assert not [c for c in says if not re.match(r"SAY ALPHA [A-Z] ", c)], says
        streamed = [c.split()[2] for c in commands if c.startswith("STREAM FILE ")]
        missing = [f for f in streamed if not (cantonese / lang / f"{f}.wav").is_file()]
        assert not missing and len(streamed) > 40
        references = [b.reference for b in await stored_bundles(db)]
        read_back = [tuple(slot_files("digits", r, lang)) for r in references]
        assert set(read_back) & set(record.fragment_runs)
        assert tuple(slot_files("alpha", "AB1234", lang)) in record.fragment_runs


# -- the caller-time benchmark --------------------------------------------------------------


async def test_caller_time_bench_hears_prompts_whole_and_a_slow_backend_as_silence(
    cantonese: Path, tmp_path: Path
) -> None:
    stack = Stack(tmp_path, cantonese)
    await stack.start()
    try:
        row = ROWS[0]
        t = await stack.trucker(row, "zh_HK")
        quick = await stack.call(row.keys("1", t), t.code, t.phone)
        stack.delay_s = 0.6
        t = await stack.trucker(row, "zh_HK")
        slow = await stack.call(row.keys("1", t), t.code, t.phone)
    finally:
        await stack.stop()
    # The caller hangs up as soon as the receipt is heard; a returning caller hears no welcome.
    assert quick.prompt_ids[-2:] == ["bundle.submitted", "bundle.next"], quick.prompt_ids
    assert quick.language == "zh_HK" and "welcome" not in quick.prompt_ids
    heard = Manifest.load(cantonese).durations_ms("zh_HK")["ivrs/language/remembered"]
    assert any(s.files == ("ivrs/language/remembered",) and s.ms == heard for s in quick.timeline)
    assert longest_silence(quick)[0] < 500 <= 600 <= longest_silence(slow)[0]
    assert slow.duration_ms > quick.duration_ms + 600
