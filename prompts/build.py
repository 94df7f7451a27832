"""`ivrs prompts build`: every prompt part of the catalog and every SAY fragment, per language,
as Asterisk sound files `<out>/<lang>/ivrs/<id path>[-N].wav`, `<out>/<lang>/digits/5.wav`, ...
Incremental: a file is rebuilt only when what it says or the engine changed (`manifest.json`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from prompts import audio
from prompts.catalog import LANGUAGES, Catalog, Sound, default_catalog
from prompts.engines import Breaker, Espeak, Gtts, SynthesisError, speak
from prompts.fragments import fragment_texts
from prompts.manifest import Entry, Manifest
from prompts.say import PAUSE, PAUSE_MS
from prompts.speech import JYUTPING_FIXES, PINYIN_FIXES, Segment, segments

ENGINES = ("auto", "gtts", "espeak")
DEFAULT_OUT = Path(os.environ.get("IVRS_SOUNDS_DIR", "var/sounds"))
# Part of every file's hash: a change to how audio is made rebuilds everything (bump the
# version when the sox chain or the text preparation changes).
RECIPE_VERSION = 4
_AUDIO = [audio.SAMPLE_RATE, audio.TARGET_RMS_DB, audio.TAIL_MS, audio.SENTENCE_GAP_MS]
RECIPE = json.dumps(
    [RECIPE_VERSION, _AUDIO, Espeak.VOICES, Gtts.LANGS, PINYIN_FIXES, JYUTPING_FIXES]
)


@dataclass(frozen=True)
class Job:
    """One recording, installed as one or more files (language.menu: in every language)."""

    segments: tuple[Segment, ...]
    targets: tuple[str, ...]  # manifest keys `<lang>/<file>`

    @property
    def hash(self) -> str:
        spoken = [[s.voice, s.text] for s in self.segments]
        return hashlib.sha256(json.dumps([RECIPE, spoken]).encode()).hexdigest()[:16]


@dataclass
class BuildReport:
    out_dir: Path
    engine: str  # gtts or espeak: what `auto` resolved to (files may still fall back)
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fell_back: dict[str, str] = field(default_factory=dict)  # built by espeak instead of gTTS
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [
            *self.notes,
            (
                f"prompts: {len(self.built)} built, {len(self.skipped)} unchanged, "
                f"{len(self.failed)} failed, {len(self.removed)} removed, engine {self.engine}, "
                f"{self.seconds:.1f} s -> {self.out_dir}"
            ),
        ]
        if self.fell_back:
            reason = next(iter(self.fell_back.values()))
            lines.append(f"{len(self.fell_back)} built by espeak instead of gTTS ({reason})")
        lines += [f"FAILED {key}: {why}" for key, why in sorted(self.failed.items())]
        return "\n".join(lines)


def plan(catalog: Catalog, langs: Iterable[str]) -> tuple[list[Job], dict[str, str]]:
    """The recordings to make, and the files that cannot be made (a malformed text)."""
    targets: dict[tuple[Segment, ...], list[str]] = {}
    invalid: dict[str, str] = {}
    for lang in langs:
        for prompt_id in catalog.ids():
            for part in catalog.parts(prompt_id, lang):
                if isinstance(part, Sound):
                    try:
                        spoken = segments(prompt_id, lang, part.text)
                    except ValueError as e:
                        invalid[f"{lang}/{part.file}"] = str(e)
                        continue
                    targets.setdefault(spoken, []).append(f"{lang}/{part.file}")
        for file, text in fragment_texts(lang).items():
            targets.setdefault((Segment(lang, text),), []).append(f"{lang}/{file}")
    return [Job(spoken, tuple(keys)) for spoken, keys in targets.items()], invalid


def build(
    engine: str = "auto",
    langs: Iterable[str] = LANGUAGES,
    out_dir: Path | str = DEFAULT_OUT,
    *,
    catalog: Catalog | None = None,
    jobs: int | None = None,
    gtts_timeout: float = 10.0,
) -> BuildReport:
    """Build the sound files of `langs` into `out_dir`. One failed file never stops the others:
    it is listed in the report's `failed`."""
    started = time.monotonic()
    langs = list(dict.fromkeys(langs))
    if engine not in ENGINES or not set(langs) <= set(LANGUAGES):
        raise ValueError(f"engine one of {ENGINES}, languages among {LANGUAGES}")
    out = Path(out_dir)
    espeak = Espeak()
    if shutil.which("sox") is None or not espeak.available():
        raise RuntimeError("the prompts build needs sox and espeak-ng (Debian: sox, espeak-ng)")
    report = BuildReport(out, engine)
    gtts = Gtts(gtts_timeout) if engine != "espeak" else None
    if engine == "auto" and gtts is not None and not _reachable(gtts):
        report.notes.append("gTTS unreachable: building offline with espeak-ng")
        gtts = None
    report.engine = "gtts" if gtts else "espeak"
    # Offline auto builds keep gTTS recordings whose words did not change.
    accepted = {"gtts"} if gtts else ({"espeak"} if engine == "espeak" else {"gtts", "espeak"})

    all_jobs, report.failed = plan(catalog or default_catalog(), langs)
    manifest = Manifest.load(out)
    todo = []
    for job in all_jobs:
        if all(_current(manifest, out, key, job.hash, accepted) for key in job.targets):
            report.skipped += job.targets
        else:
            todo.append(job)
    breaker = Breaker()
    try:
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            futures = {pool.submit(_make, job, out, espeak, gtts, breaker): job for job in todo}
            for future, job in futures.items():
                _collect(future, job, manifest, report)
        planned = {key for job in all_jobs for key in job.targets}
        planned |= _make_pauses(manifest, out, langs, report)
        _remove_stale(manifest, out, langs, planned, report)
    finally:
        manifest.save()
    report.seconds = time.monotonic() - started
    return report


def _reachable(gtts: Gtts) -> bool:
    probe = Gtts(min(gtts.timeout, 5.0))
    with tempfile.TemporaryDirectory(prefix="ivrs-gtts-") as tmp:
        try:
            probe.synthesize(Segment("en", "OK"), Path(tmp) / "probe")
        except SynthesisError:
            return False
    return True


def _current(manifest: Manifest, out: Path, key: str, digest: str, engines: set[str]) -> bool:
    entry = manifest.entries.get(key)
    return (
        entry is not None
        and entry.hash == digest
        and entry.engine in engines
        and (out / f"{key}.wav").is_file()
    )


def _make(
    job: Job, out: Path, espeak: Espeak, gtts: Gtts | None, breaker: Breaker
) -> tuple[str, int, str | None]:
    """Synthesise, convert, normalise, install. Runs in a worker thread: the work is in
    subprocesses and HTTP, so threads give real parallelism."""
    with tempfile.TemporaryDirectory(prefix="ivrs-prompt-") as tmp_name:
        tmp = Path(tmp_name)
        engine, raws, fallback = speak(job.segments, tmp, espeak, gtts, breaker)
        final = tmp / "final.wav"
        ms = audio.telephone_recording(raws, final)
        for key in job.targets:
            dest = out / f"{key}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(final, dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)  # Asterisk never plays half a file
    return engine, ms, fallback


def _collect(
    future: Future[tuple[str, int, str | None]], job: Job, manifest: Manifest, report: BuildReport
) -> None:
    try:
        engine, ms, fallback = future.result()
    except Exception as e:  # one file's failure, whatever it is, must not stop the build
        report.failed.update(dict.fromkeys(job.targets, str(e) or repr(e)))
        return
    for key in job.targets:
        manifest.entries[key] = Entry(job.hash, engine, ms)
        report.built.append(key)
        if fallback:
            report.fell_back[key] = fallback


def _make_pauses(manifest: Manifest, out: Path, langs: list[str], report: BuildReport) -> set[str]:
    """The silence between the digit groups of a number read back (prompts/say.py), made by
    sox in every language folder (a file missing there, Asterisk would take from `en`)."""
    digest = hashlib.sha256(json.dumps([RECIPE, PAUSE_MS]).encode()).hexdigest()[:16]
    keys = {f"{lang}/{PAUSE}" for lang in langs}
    for key in sorted(keys):
        entry, dest = manifest.entries.get(key), out / f"{key}.wav"
        if entry is not None and entry.hash == digest and dest.is_file():
            report.skipped.append(key)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        manifest.entries[key] = Entry(digest, "sox", audio.silence(dest, PAUSE_MS))
        report.built.append(key)
    return keys


def _remove_stale(
    manifest: Manifest, out: Path, langs: list[str], planned: set[str], report: BuildReport
) -> None:
    """Files of a built language that the catalog no longer has (a prompt split differently)."""
    for key in [k for k in manifest.entries if k.split("/", 1)[0] in langs and k not in planned]:
        (out / f"{key}.wav").unlink(missing_ok=True)
        del manifest.entries[key]
        report.removed.append(key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ivrs prompts build",
        description="Build the prompts and SAY fragments as 8 kHz WAVs in Asterisk's layout.",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="gtts (online, espeak-ng per file when it fails), espeak (offline), "
        "auto (gtts if reachable; default)",
    )
    parser.add_argument(
        "--lang",
        action="append",
        choices=LANGUAGES,
        dest="langs",
        help="a language to build (repeatable; default all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="sound folder (default IVRS_SOUNDS_DIR or var/sounds)",
    )
    parser.add_argument("--jobs", type=int, default=None, help="parallel files (default: CPUs)")
    args = parser.parse_args(argv)
    try:
        report = build(args.engine, args.langs or LANGUAGES, args.out, jobs=args.jobs)
    except RuntimeError as e:
        parser.exit(2, f"ivrs prompts build: {e}\n")
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
