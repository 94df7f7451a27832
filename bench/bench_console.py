"""The supervisors' console at scale: 100,000 calls (with their events, recordings and bundles)
on PostgreSQL, and the time of the calls list (filtered, first and last pages) and of a call's
page, over HTTP against the real backend, signed in as a supervisor.

    .venv/bin/python -m bench.bench_console [--calls 100000] [--requests 200]
        [--database-url postgresql+asyncpg://...]

Without --database-url a throwaway PostgreSQL server is started (harness/postgres.py). The rows
are made by the database itself (INSERT ... SELECT generate_series), then ANALYZEd as a live
database would be. Goal: p95 under 100 ms for each page. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet
from sqlalchemy import text

from backend.app import start_backend
from backend.console.auth import create_supervisor
from backend.database import make_engine, open_database, upgrade_schema
from backend.settings import BackendSettings
from backend.timezones import HONG_KONG
from cli.logs import configure_logging

GOAL_MS = 100.0
EVENTS_PER_CALL = 12
SUPERVISOR, PASSWORD = "bench", "bench-console-password"

# Calls over the last 60 days; 2 hotlines, 3 languages, 5,000 callers, 3,000 accounts; one in
# 12 hung up, one in 25 failed to log in, one in 6 not recorded; completed calls bundled.
SEED_CALLS = """
INSERT INTO calls (id, uniqueid, hotline, caller_id, channel, language, started_at, ended_at,
                   outcome, last_stage, account_number)
SELECT n, '1790000000.' || n,
       CASE WHEN n % 3 = 0 THEN '31532265' ELSE '39023333' END,
       '8529' || lpad(((n::bigint * 7919) % 5000)::text, 7, '0'),
       'PJSIP/trunk-' || lpad(to_hex(n), 8, '0'),
       (ARRAY['zh_HK', 'zh_HK', 'zh_HK', 'zh_CN', 'en'])[1 + n % 5],
       now() - interval '60 days' + (n * interval '60 days' / :calls),
       now() - interval '60 days' + (n * interval '60 days' / :calls) + interval '150 seconds',
       CASE WHEN n % 12 = 0 THEN 'caller_hung_up' WHEN n % 25 = 0 THEN 'login_failed'
            ELSE 'completed' END,
       CASE WHEN n % 12 = 0 THEN 'bundle' WHEN n % 25 = 0 THEN 'login' ELSE 'goodbye' END,
       CASE WHEN n % 25 = 0 THEN NULL
            ELSE lpad((10000000 + (n::bigint * 104729) % 3000)::text, 8, '0') END
FROM generate_series(1, :calls) AS n
"""
SEED_EVENTS = """
INSERT INTO call_events (call_id, at, kind, name, detail, duration_ms)
SELECT c.id, c.started_at + e * interval '10 seconds',
       (ARRAY['stage', 'prompt', 'input', 'prompt', 'input', 'backend'])[1 + e % 6],
       (ARRAY['login', 'login.account', 'login.account', 'login.password', 'login.password',
              'login_ok'])[1 + e % 6],
       CASE WHEN e % 6 = 4 THEN '{"value": "***", "length": 6}'::json
            WHEN e % 6 = 2 THEN json_build_object('value', c.account_number, 'length', 8)
            ELSE '{}'::json END,
       CASE WHEN e % 6 IN (1, 3) THEN 2400 ELSE NULL END
FROM calls c CROSS JOIN generate_series(0, :events - 1) AS e
"""
SEED_RECORDINGS = """
INSERT INTO recordings (call_id, file_name, size_bytes, found_at)
SELECT id, uniqueid || '.wav', 2400000, ended_at FROM calls WHERE id % 6 <> 0
"""
SEED_BUNDLES = """
INSERT INTO accounts (number, type, status, password_hash, services, needs_activation,
                      failed_logins)
SELECT lpad((10000000 + n)::text, 8, '0'), 'trucker', 'active', 'x', '[]', false, 0
FROM generate_series(0, 2999) AS n;
INSERT INTO bundles (reference, account_id, vehicle_mark, created_at, earliest_crossing, status,
                     call_id)
SELECT lpad(c.id::text, 10, '0'), a.id, 'AB' || (1000 + c.id % 8000), c.ended_at,
       c.ended_at + interval '30 minutes', 'active', c.id
FROM calls c JOIN accounts a ON a.number = c.account_number WHERE c.outcome = 'completed'
"""
RESET_SEQUENCES = "SELECT setval('calls_id_seq', (SELECT max(id) FROM calls))"


@asynccontextmanager
async def postgres(url: str | None) -> AsyncIterator[str]:
    """The given database, or one on a throwaway server (stopped afterwards)."""
    if url:
        yield url
        return
    from harness.postgres import start_postgres

    server = await asyncio.to_thread(start_postgres)
    try:
        async with server.database() as fresh:
            yield fresh
    finally:
        await asyncio.to_thread(server.stop)


async def seed(url: str, calls: int) -> float:
    started = time.perf_counter()
    engine = make_engine(url)
    try:
        await upgrade_schema(engine)
        async with engine.begin() as connection:
            await connection.execute(text(SEED_CALLS), {"calls": calls})
            await connection.execute(text(SEED_EVENTS), {"events": EVENTS_PER_CALL})
            await connection.execute(text(SEED_RECORDINGS))
            for statement in SEED_BUNDLES.split(";"):
                await connection.execute(text(statement))
            await connection.execute(text(RESET_SEQUENCES))
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/console/sign-in") as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())
    assert token is not None
    form = {"csrf_token": token.group(1), "name": SUPERVISOR, "password": PASSWORD}
    async with http.post(f"{base}/console/sign-in", data=form) as response:
        assert str(response.url).endswith("/console/calls"), "sign-in failed"


async def timed(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(url) as response:
        body = await response.read()
        assert response.status == 200, (url, response.status, body[:300])
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def run(calls: int, requests: int, database_url: str | None) -> int:
    configure_logging(level="warning", fmt="console")
    async with postgres(database_url) as url:
        print(f"Seeding {calls:,} calls ({EVENTS_PER_CALL} events each) on PostgreSQL ...")
        seconds = await seed(url, calls)
        print(f"  seeded in {seconds:.1f} s")
        settings = BackendSettings(
            database_url=url,
            secret_key=Fernet.generate_key(),
            argon2_profile="test",
            console_plain_http=True,
            recordings_dir=Path(tempfile.mkdtemp(prefix="ivrs-bench-rec-")),
        )
        async with open_database(settings) as db:
            await create_supervisor(db, SUPERVISOR, "supervisor", PASSWORD)
            async with db.engine.connect() as connection:
                oldest = (
                    await connection.execute(
                        text("SELECT id FROM calls ORDER BY started_at, id LIMIT 1 OFFSET 50")
                    )
                ).scalar_one()
        day = (datetime.now(HONG_KONG) - timedelta(days=10)).date().isoformat()
        backend = await start_backend(settings)
        rng = random.Random(8)
        cases = {
            "list, first page": lambda: "/console/calls",
            "list, last page (keyset)": lambda: f"/console/calls?before={oldest}",
            "list, hotline + outcome": lambda: (
                "/console/calls?hotline=31532265&outcome=caller_hung_up"
            ),
            "list, caller number": lambda: f"/console/calls?caller=8529{rng.randrange(5000):07d}",
            "list, account, one day": lambda: (
                f"/console/calls?account={10000000 + rng.randrange(3000):08d}"
                f"&from={day}T00:00&to={day}T23:59"
            ),
            "list, language + no recording": lambda: "/console/calls?language=en&recording=no",
            "call page (timeline, bundle)": lambda: f"/console/calls/{rng.randrange(1, calls)}",
        }
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await sign_in(http, backend.url)
                for path in cases.values():  # warm the pool and the caches
                    for _ in range(5):
                        await timed(http, backend.url + path())
                # Round robin: a burst of load on the machine slows every page alike.
                times: dict[str, list[float]] = {name: [] for name in cases}
                for _ in range(requests):
                    for name, path in cases.items():
                        times[name].append(await timed(http, backend.url + path()))
                rows = [
                    (name, statistics.median(t), percentile(t, 0.95), max(t))
                    for name, t in times.items()
                ]
        finally:
            await backend.stop()
    print(f"\n{calls:,} calls, {requests} requests per page, over HTTP (PostgreSQL)\n")
    print("| page | p50 ms | p95 ms | max ms | goal |")
    print("|---|---|---|---|---|")
    for name, p50, p95, worst in rows:
        verdict = "met" if p95 < GOAL_MS else "MISSED"
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {worst:.1f} | < {GOAL_MS:.0f} ms: {verdict} |")
    return 0 if all(p95 < GOAL_MS for _, _, p95, _ in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="the console's list and call page at scale")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="per page")
    parser.add_argument("--database-url", help="postgresql+asyncpg://... (default: throwaway)")
    args = parser.parse_args()
    return asyncio.run(run(args.calls, args.requests, args.database_url))


if __name__ == "__main__":
    raise SystemExit(main())
