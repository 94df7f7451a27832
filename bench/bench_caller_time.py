"""Caller time: how long the calls of docs/performance.md ("Caller time") take as a caller hears
them, and the longest silence the caller hears, per language.

    .venv/bin/python -m bench.bench_caller_time [--sounds var/sounds-espeak] [--detail]

Real parts, one process: the backend (SQLite in a temporary directory), the FastAGI server with
its production settings (5 s backend timeout), and the simulated Asterisk playing the prompts
built offline by `ivrs prompts build --engine espeak` (run first, incremental): every prompt and
SAY fragment lasts as long as its built WAV (the manifest's lengths, read with the wave module),
keys take 250 ms each, and a call lasts up to its hang-up. The server's own time (its backend
requests above all) is real time, added to the simulator's virtual clock as it passes, so a slow
backend is heard as silence.

Silence is the system's turn: from the caller's last key of an entry to the start of the next
prompt (timeouts the server waits, and its time to answer). It is measured over every call
below, and over one more call per language with the backend slow (each answer held 4.5 s, just
under the timeout) and one with the backend hanging from the bundle's submission on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
from cryptography.fernet import Fernet

from backend import admin
from backend.app import start_backend
from backend.database import open_database
from backend.settings import BackendSettings
from backend.sms import MemorySender
from formats import keypad_keys
from ivr.server import start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, Command, SimulatedAsterisk

LANGUAGE_KEYS = {"zh_HK": "1", "zh_CN": "2", "en": "3"}
PASSWORD = "246810"
VEHICLE = "AB1234"
MOBILE = "91234567"
REPOSITORY = Path(__file__).resolve().parents[1]
SLOW_BACKEND_S = 4.5


class Clock:
    """The backend's clock: a token code once used is refused, so each login moves it a step."""

    def __init__(self) -> None:
        self.at = datetime(2029, 4, 1, 6, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


@dataclass
class Trucker:
    account: str
    seed: str
    ccrns: list[str]
    clock: Clock
    phone: str  # the caller number it calls from

    def code(self) -> str:
        self.clock.at += timedelta(seconds=60)
        return pyotp.TOTP(self.seed, interval=60).at(self.clock.at)

    def wrong_code(self) -> str:
        right = self.code()
        return f"{(int(right[0]) + 1) % 10}{right[1:]}"


@dataclass(frozen=True)
class Row:
    """One row of the table: a call's key script, given the language key and the trucker."""

    name: str
    goal_s: float
    keys: Callable[[str, Trucker], str]
    returning: bool = True  # the truck was bundled before, so it is offered as a recent vehicle
    first_call: bool = False  # the account still has to register a mobile and accept the terms
    codes: Callable[[Trucker, MemorySender], Callable[[], str]] = lambda t, _: t.code


def login(t: Trucker, barge: str = "") -> str:
    """The 8-digit account number submits itself; the password and code end with `#`."""
    return f"{barge}{t.account} {barge}{PASSWORD}# {barge}{{totp}}#"


LETTERS = "".join(keypad_keys(c) for c in VEHICLE if c.isalpha())
DIGITS = "".join(c for c in VEHICLE if c.isdigit())


def wrong_then_right(t: Trucker, _: MemorySender) -> Callable[[], str]:
    codes = iter([t.wrong_code])
    return lambda: next(codes, t.code)()


def token_then_sms(t: Trucker, sms: MemorySender) -> Callable[[], str]:
    """{totp} is the token code at login, then the SMS code sent to the mobile."""
    used: list[int] = []

    def code() -> str:
        used.append(1)
        return t.code() if len(used) == 1 else (sms.last_code(MOBILE) or "")

    return code


# The calls of docs/call-flow.md. A key typed after a prompt ends is plain; `^` types it during
# the prompt (barge-in, typing ahead). A returning trucker calls from the phone of his earlier
# call (its language is remembered: no language key). The CCRN is read back in `bundle.more`,
# so the caller hears it before pressing 2 (submit); every caller hangs up as soon as the receipt
# (reference and crossing time) has been heard, at `bundle.next` (`hang_up_after_receipt`).
ROWS = [
    Row(
        "returning trucker, one CCRN, truck offered as a recent vehicle, no typing ahead",
        45,
        lambda lang, t: f"{login(t)} 1 {t.ccrns[1]}# 2",
    ),
    Row(
        "the same, typing ahead wherever possible (read-back and reference still heard)",
        20,
        lambda lang, t: f"{login(t, '^')} ^1 ^{t.ccrns[1]}# 2",
    ),
    Row(
        "the same, truck keyed in by letters",
        60,
        lambda lang, t: f"{login(t)} 4 {LETTERS}# {DIGITS}# 1 {t.ccrns[1]}# 2",
    ),
    Row(
        "first call: login, mobile + SMS code, terms, then the bundle",
        120,
        lambda lang, t: (
            f"{lang} {login(t)} {MOBILE} 1 {{totp}} 1 {LETTERS}# {DIGITS}# 1 {t.ccrns[1]}# 2"
        ),
        returning=False,
        first_call=True,
        codes=token_then_sms,
    ),
    Row(
        "one wrong token code, then as the first row",
        60,
        lambda lang, t: f"{login(t)} {PASSWORD}# {{totp}}# 1 {t.ccrns[1]}# 2",
        codes=wrong_then_right,
    ),
]


@dataclass
class Stack:
    """The backend behind a proxy that can slow or hang it, the FastAGI server, the SMS outbox."""

    tmp: Path
    sounds: Path
    clock: Clock = field(default_factory=Clock)
    sms: MemorySender = field(default_factory=MemorySender)
    delay_s: float = 0.0  # each backend answer is held this long
    answering: asyncio.Event = field(default_factory=asyncio.Event)  # clear: backend hangs
    db: Any = None
    agi: Any = None
    _stops: list[Any] = field(default_factory=list)
    _accounts: Iterator[int] = field(default_factory=lambda: itertools.count(20_000_000))

    async def start(self) -> None:
        self.answering.set()
        settings = BackendSettings(
            clock=self.clock.now,
            database_url=f"sqlite+aiosqlite:///{self.tmp / 'bench.db'}",
            api_token="bench-token",
            argon2_profile="test",
            secret_key=Fernet.generate_key(),
            recordings_dir=self.tmp / "recordings",
        )
        backend = await start_backend(settings, sms_sender=self.sms)
        self._stops.append(backend.stop)
        proxy = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self._stops.append(proxy.wait_closed)
        self._stops.append(proxy.close)
        self._backend_port = int(backend.url.rsplit(":", 1)[1])
        port = proxy.sockets[0].getsockname()[1]
        opened = open_database(settings)
        self.db = await opened.__aenter__()
        self._stops.append(lambda: opened.__aexit__(None, None, None))
        agi_settings = replace(
            IvrSettings(),
            backend_url=f"http://127.0.0.1:{port}",
            api_token=settings.api_token,
            agi_port=0,
            spool_dir=str(self.tmp / "spool"),
        )
        self.agi = await start_agi_server(agi_settings, port=0)
        self._stops.append(self.agi.stop)

    async def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stopped = stop()
                if asyncio.iscoroutine(stopped):
                    await stopped

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: requests go on to the backend; answers come back after
        `delay_s`, or not at all while `answering` is clear."""
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._backend_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if slow:
                        await self.answering.wait()
                    if slow and self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        with contextlib.suppress(asyncio.CancelledError):  # the bench is over
            await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    async def trucker(self, row: Row, lang: str) -> Trucker:
        number = str(next(self._accounts))
        await admin.create_account(self.db, number, PASSWORD, needs_activation=row.first_call)
        seed = await admin.add_token(
            self.db, number, kind="hardware", digits=6, period=60, expires_on=date(2030, 4, 30)
        )
        ccrns = [await admin.lodge_cargo(self.db) for _ in range(2)]
        t = Trucker(number, seed, ccrns, self.clock, phone=f"852{number}")
        if row.returning:  # an earlier call in `lang` bundled the truck: a recent vehicle now
            keys = f"{LANGUAGE_KEYS[lang]} {login(t)} {LETTERS}# {DIGITS}# 1 {ccrns[0]}# 2"
            await self.call(keys, t.code, t.phone)
        return t

    async def call(
        self,
        keys: str,
        codes: Callable[[], str],
        phone: str,
        on_command: Callable[[Command], Any] | None = None,
        hangup_at: Callable[[Command], bool] | None = None,
    ) -> CallRecord:
        """A call whose clock also moves by the server's real time between commands."""
        last = time.monotonic()

        async def heard_server_time(command: Command) -> None:
            nonlocal last
            now = time.monotonic()
            await asterisk.channel.advance(int((now - last) * 1000), "wait")
            if on_command is not None:
                on_command(command)
            last = time.monotonic()

        asterisk = SimulatedAsterisk(
            keys=keys,
            totp=codes,
            sounds_dir=self.sounds,
            caller_id=phone,
            on_command=heard_server_time,
            hangup_at=hangup_at or hang_up_after_receipt,
        )
        reader, writer = await asyncio.open_connection(self.agi.host, self.agi.port)
        return await asterisk.run(reader, writer, host=self.agi.host, port=self.agi.port)


def hang_up_after_receipt(command: Command) -> bool:
    """The caller has heard the reference and the crossing time: no need to wait for more."""
    return command.prompt_id == "bundle.next"


def longest_silence(record: CallRecord) -> tuple[int, str]:
    """The longest stretch from a key that ends an entry to the next prompt's start, and the
    prompt it came before."""
    longest, before = 0, ""
    since: int | None = None
    for span in record.timeline:
        if span.kind == "keys":
            since = span.at_ms + span.ms
        elif span.kind in ("prompt", "say") and not span.files[0].startswith("silence/"):
            if since is not None and span.at_ms - since > longest:
                longest, before = span.at_ms - since, span.files[0]
            since = None
    return longest, before


def build_prompts(sounds: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "cli.main", "prompts", "build", "--engine", "espeak"]
        + ["--out", str(sounds)],
        cwd=REPOSITORY,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def measure(sounds: Path, langs: Sequence[str], detail: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": {}, "silence": {}}
    with tempfile.TemporaryDirectory(prefix="caller-time-") as tmp:
        stack = Stack(Path(tmp), sounds)
        await stack.start()
        try:
            for row in ROWS:
                for lang in langs:
                    t = await stack.trucker(row, lang)
                    keys = row.keys(LANGUAGE_KEYS[lang], t)
                    record = await stack.call(keys, row.codes(t, stack.sms), t.phone)
                    check(record, row.name, lang)
                    results["rows"][row.name, lang] = record.duration_ms / 1000
                    note_silence(results, lang, record, "")
                    if detail:
                        print(f"{lang} {row.name}: {' '.join(record.prompt_ids)}")
            first = ROWS[0]
            for lang in langs:
                # From a new phone: with the backend slow, no language is remembered in time.
                t = await stack.trucker(first, lang)
                keys = f"{LANGUAGE_KEYS[lang]} {first.keys(LANGUAGE_KEYS[lang], t)}"
                stack.delay_s = SLOW_BACKEND_S
                record = await stack.call(keys, t.code, f"{t.phone}0")
                stack.delay_s = 0
                check(record, "backend slow", lang)
                note_silence(results, lang, record, f"backend slow ({SLOW_BACKEND_S} s)")
                t = await stack.trucker(first, lang)

                def hang_at_submit(command: Command) -> None:
                    if command.prompt_id == "bundle.more":
                        stack.answering.clear()

                keys = first.keys(LANGUAGE_KEYS[lang], t)
                record = await stack.call(keys, t.code, t.phone, hang_at_submit)
                stack.answering.set()
                note_silence(results, lang, record, "backend hanging")
        finally:
            stack.answering.set()
            await stack.stop()
    return results


def check(record: CallRecord, row: str, lang: str) -> None:
    """A measured call must be the call the row names: the bundle went through."""
    if "bundle.submitted" not in record.prompt_ids or record.language != lang:
        raise SystemExit(f"{lang}, {row}: the call went astray: {' '.join(record.prompt_ids)}")


def note_silence(results: dict[str, Any], lang: str, record: CallRecord, case: str) -> None:
    ms, before = longest_silence(record)
    if ms > results["silence"].get(lang, (0, ""))[0]:
        where = f"before {before}" + (f", {case}" if case else "")
        results["silence"][lang] = (ms, where)


def table(results: dict[str, Any], langs: Sequence[str]) -> str:
    head = " / ".join(langs)
    lines = [f"| call | seconds ({head}) | goal | met |", "|---|---|---|---|"]
    for row in ROWS:
        seconds = [results["rows"][row.name, lang] for lang in langs]
        values = " / ".join(f"{s:.1f}" for s in seconds)
        met = "yes" if max(seconds) <= row.goal_s else "**no**"
        lines.append(f"| {row.name} | {values} | ≤ {row.goal_s:.0f} in every language | {met} |")
    silences = results["silence"]
    values = " / ".join(f"{silences[lang][0] / 1000:.1f}" for lang in langs)
    worst = max(langs, key=lambda lang: silences[lang][0])
    lines.append(
        f"| longest silence the caller hears, backend slow or hanging included "
        f"(worst: {silences[worst][1]}) | {values} | ≤ 4 s | "
        + ("yes |" if silences[worst][0] <= 4000 else "**no** |")
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sounds",
        type=Path,
        default=Path(os.environ.get("IVRS_BENCH_SOUNDS", "var/sounds-espeak")),
        help="where the espeak-ng prompts are built (default var/sounds-espeak)",
    )
    parser.add_argument("--lang", action="append", choices=list(LANGUAGE_KEYS), dest="langs")
    parser.add_argument("--detail", action="store_true", help="print each call's prompt ids")
    args = parser.parse_args(argv)
    langs = args.langs or list(LANGUAGE_KEYS)
    build_prompts(args.sounds)
    results = asyncio.run(measure(args.sounds, langs, args.detail))
    print(table(results, langs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
