"""Load benchmark: N simulated bundling calls at concurrency C against the real FastAGI server
and the real backend, over loopback TCP, prompts taking no time (virtual clock).

    .venv/bin/python -m bench.bench_calls --calls 200 --concurrency 50

Reports completed calls per second, the peak of calls held at once by the FastAGI process, the
time the server (and the backend behind it) took per AGI command, as the simulated Asterisk
measures it between its reply and the next command, and the process's memory growth per call.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import pyotp
from cryptography.fernet import Fernet

from backend import admin
from backend.app import start_backend
from backend.database import open_database
from backend.settings import BackendSettings
from cli.logs import configure_logging
from formats import keypad_keys
from ivr.server import start_agi_server
from ivr.settings import IvrSettings
from ivr.simulator import place_call

VEHICLE = "AB1234"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def run(calls: int, concurrency: int, argon2: str) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ivrs-bench-"))
    settings = BackendSettings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        api_token="bench",
        argon2_profile=argon2,
        secret_key=Fernet.generate_key(),
        recordings_dir=tmp / "recordings",
    )
    backend = await start_backend(settings, "127.0.0.1", 0)
    truckers = []
    async with open_database(settings) as db:
        for i in range(calls):
            number = f"{20_000_000 + i}"
            await admin.create_account(db, number, "246810")
            seed = await admin.add_token(db, number, expires_on=date(2029, 4, 30))
            truckers.append((number, seed, await admin.lodge_cargo(db)))
    agi = await start_agi_server(
        replace(IvrSettings(), backend_url=backend.url, api_token="bench"), port=0
    )
    letters = "".join(keypad_keys(c) for c in VEHICLE if c.isalpha())
    gaps_ms: list[float] = []
    peak = 0
    failures = 0
    limit = asyncio.Semaphore(concurrency)

    async def one_call(number: str, seed: str, ccrn: str) -> None:
        nonlocal peak, failures
        keys = f"3 {number}# 246810# {{totp}}# 1 {letters}# 1234# 1 {ccrn}# 1 2 2 9"
        last = [0.0]

        def on_command(_command: object) -> None:
            nonlocal peak
            now = time.perf_counter()
            if last[0]:
                gaps_ms.append((now - last[0]) * 1000)
            last[0] = now
            peak = max(peak, len(agi.app.calls))

        async with limit:
            record = await place_call(
                agi.host,
                agi.port,
                keys=keys,
                totp=pyotp.TOTP(seed, interval=60).now,
                on_command=on_command,
            )
        if "bundle.submitted" not in record.prompt_ids:
            failures += 1

    rss_before = rss_mib()
    started = time.perf_counter()
    await asyncio.gather(*(one_call(*t) for t in truckers))
    wall = time.perf_counter() - started
    await agi.stop()
    await backend.stop()
    return {
        "calls": calls,
        "concurrency": concurrency,
        "failed": failures,
        "wall_s": wall,
        "calls_per_s": calls / wall,
        "peak_calls": peak,
        "commands": len(gaps_ms),
        "p50_ms": statistics.median(gaps_ms),
        "p99_ms": percentile(gaps_ms, 0.99),
        "rss_growth_kib_per_call": (rss_mib() - rss_before) * 1024 / calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--argon2", default="test", choices=("test", "rfc9106"))
    args = parser.parse_args()
    configure_logging(level="error")
    r = asyncio.run(run(args.calls, args.concurrency, args.argon2))
    print(
        "| calls | concurrency | failed | calls/s | peak held "
        "| server time per AGI command p50 / p99 | RSS growth per call |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {r['calls']} | {r['concurrency']} | {r['failed']} | {r['calls_per_s']:.1f} | "
        f"{r['peak_calls']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms | "
        f"{r['rss_growth_kib_per_call']:.0f} KiB |"
    )
    print(f"({r['commands']} commands, {r['wall_s']:.1f} s; backend and simulator in this process)")


if __name__ == "__main__":
    main()
