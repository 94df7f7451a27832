"""The backend's CPU per API request, by endpoint: what a bundling call costs the backend, and
where. The backend is a process of its own (`ivrs backend`); the requests are the ones the IVR
sends in a bundling call, through the IVR's own client, one at a time (so the CPU read from
/proc is the backend's work for that request kind, with no queueing in it).

    .venv/bin/python -m bench.bench_backend [--calls 200] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from backend import admin
from backend.database import open_database
from backend.settings import BackendSettings
from backend_client import BackendClient
from bench.bench_calls import API_TOKEN, HOST, PASSWORD, REPOSITORY, VEHICLE, Trucker, free_port
from bench.processes import ServerProcess, python


def call_events(at: datetime, account: str) -> list[dict[str, Any]]:
    """The 40 events the IVR logs in a bundling call (prompts, masked inputs, stages)."""
    steps = [
        ("stage", "language", {}),
        ("prompt", "language.menu", {"interrupted": False}),
        ("input", "language.menu", {"value": "3"}),
        ("prompt", "welcome", {"interrupted": False}),
        ("stage", "login", {}),
        ("prompt", "login.account", {"interrupted": False}),
        ("input", "login.account", {"value": account, "length": 8}),
        ("prompt", "login.password", {"interrupted": False}),
        ("input", "login.password", {"value": "***", "length": 6}),
        ("prompt", "login.token", {"interrupted": False}),
        ("input", "login.token", {"value": "***", "length": 6}),
        ("backend", "login", {"result": "ok", "account": account}),
        ("stage", "menu", {}),
        ("prompt", "menu.main", {"interrupted": False}),
        ("input", "menu.main", {"value": "1"}),
        ("stage", "vehicle", {}),
    ]
    steps += [("prompt", f"vehicle.step{n}", {"interrupted": False}) for n in range(12)]
    steps += [("input", f"bundle.step{n}", {"value": "1"}) for n in range(12)]
    return [
        {
            "at": (at + timedelta(milliseconds=n)).isoformat(),
            "kind": kind,
            "name": name,
            "detail": detail,
            "duration_ms": 0 if kind == "prompt" else None,
        }
        for n, (kind, name, detail) in enumerate(steps)
    ]


async def prepare(db_url: str, tmp: Path, calls: int) -> tuple[dict[str, str], list[Trucker]]:
    settings = BackendSettings(
        database_url=db_url,
        api_token=API_TOKEN,
        argon2_profile="test",
        secret_key=Fernet.generate_key(),
        recordings_dir=tmp / "recordings",
    )
    truckers = []
    async with open_database(settings) as db:
        first = 20_000_000 + random.Random().randrange(70_000_000 - calls)
        for number in range(first, first + calls):
            await admin.create_account(db, str(number), PASSWORD)
            seed = await admin.add_token(db, str(number), expires_on=date(2029, 4, 30))
            truckers.append(Trucker(str(number), seed, await admin.lodge_cargo(db)))
    env = {
        "IVRS_DATABASE_URL": db_url,
        "IVRS_API_TOKEN": API_TOKEN,
        "IVRS_SECRET_KEY": settings.secret_key.decode(),
        "IVRS_ARGON2_PROFILE": "test",
        "IVRS_RECORDINGS_DIR": str(settings.recordings_dir),
        "IVRS_LOG_LEVEL": "warning",
    }
    return env, truckers


async def measure(db_url: str | None, calls: int) -> dict[str, float]:
    """CPU milliseconds of the backend per request, by endpoint."""
    tmp = Path(tempfile.mkdtemp(prefix="ivrs-bench-backend-"))
    env, truckers = await prepare(db_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}", tmp, calls)
    port = free_port()
    backend = await ServerProcess.start(
        "ivrs backend",
        python("-m", "cli.main", "backend", "--host", HOST, "--port", str(port)),
        env,
        lambda line: port if "Running on" in line else None,
    )
    client = BackendClient(f"http://{HOST}:{port}", API_TOKEN, timeout=30)
    results: dict[str, float] = {}
    call_ids: list[int] = []

    async def step(name: str, request: Callable[[int, Trucker], Awaitable[Any]]) -> None:
        before = backend.cpu_s()
        for n, trucker in enumerate(truckers):
            await request(n, trucker)
        results[name] = (backend.cpu_s() - before) / len(truckers) * 1000

    async def open_call(n: int, t: Trucker) -> None:
        call_ids.append(
            await client.open_call(
                f"{time.time():.0f}.{uuid.uuid4().int % 10**9}",
                "39023333",
                "91234567",
                f"PJSIP/t-{n}",
                "en",
            )
        )

    try:
        await client.service_status()  # the connection made, the first request's costs paid
        await step("health (no database)", lambda n, t: client._request("GET", "/v1/health"))
        await step("open call", open_call)
        await step(
            "events (40)",
            lambda n, t: client.add_events(call_ids[n], call_events(datetime.now(UTC), t.account)),
        )
        await step(
            "login",
            lambda n, t: client.login(t.account, PASSWORD, t.code(), call_ids[n], "91234567"),
        )
        await step("recent vehicles", lambda n, t: client.recent_vehicles(t.account))
        await step("check cargo", lambda n, t: client.check_cargo(t.ccrn))
        await step(
            "bundle",
            lambda n, t: client.bundle(
                t.account, VEHICLE, [t.ccrn], call_ids[n], f"bench-{uuid.uuid4()}"
            ),
        )
        await step(
            "end call",
            lambda n, t: client.end_call(call_ids[n], "completed", "goodbye", t.account, "en"),
        )
    finally:
        await client.close()
        await backend.stop()
    return results


async def run(args: argparse.Namespace) -> dict[str, float]:
    if args.postgres:
        sys.path.insert(0, REPOSITORY)
        from tests.postgres import start_postgres

        server = await asyncio.to_thread(start_postgres)
        try:
            async with server.database() as url:
                return await measure(url, args.calls)
        finally:
            await asyncio.to_thread(server.stop)
    return await measure(None, args.calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="requests of each kind (200)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    print("| request | backend CPU per request |\n| --- | --- |")
    for name, cpu_ms in results.items():
        print(f"| {name} | {cpu_ms:.1f} ms |")
    print(f"| **a bundling call** | **{sum(results.values()):.1f} ms** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
