"""The backend's CPU per API request, by endpoint: what a bundling call costs the backend, and
where. The backend is a process of its own (`ivrs backend`); the requests are the ones the IVR
sends in a bundling call, through the IVR's own client, one at a time (so the CPU read from
/proc is the backend's work for that request kind, with no queueing in it).

    .venv/bin/python -m bench.bench_backend [--calls 200] [--postgres] [--at-once 50 --workers 2]
    .venv/bin/python -m bench.bench_backend --postgres --against /tmp/before  # old against new

With --against, a second backend runs from another checkout (`git worktree add /tmp/before
COMMIT`), on a database of its own, and the two take turns: what a change saves, on one
host's moment. With --at-once, the same requests are then sent as whole calls, that many at a
time, to a fresh database: the backend alone at its limit (calls per second, and how busy it
is).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backend_client import BackendClient
from bench.bench_calls import (
    API_TOKEN,
    HOST,
    PASSWORD,
    REPOSITORY,
    VEHICLE,
    Trucker,
    prepare_backend,
    start_backend_process,
)
from bench.processes import ServerProcess, tree_cpu_s

# Requests of one kind each side sends before the other's turn (--against).
BLOCK = 50
# One request: the client, that side's call ids, the call's index, its trucker.
Request = Callable[[BackendClient, list[int], int, Trucker], Awaitable[Any]]


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


@contextlib.asynccontextmanager
async def backend_for(
    db_url: str | None, calls: int, workers: int = 1, tree: Path | None = None
) -> AsyncIterator[tuple[ServerProcess, BackendClient, list[Trucker]]]:
    """The backend (`workers` processes; from `tree`, another checkout, if given) with `calls`
    truckers, and the IVR's client to it."""
    tmp = Path(tempfile.mkdtemp(prefix="ivrs-bench-backend-"))
    database_url = db_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    env, truckers = await prepare_backend(database_url, tmp, calls)
    backend = await start_backend_process(env, workers, tree)
    client = BackendClient(f"http://{HOST}:{backend.port}", API_TOKEN, timeout=60)
    try:
        await client._request(
            "GET", "/v1/health"
        )  # the connection made, the first request's costs paid
        yield backend, client, truckers
    finally:
        await client.close()
        await backend.stop()


def caller(n: int) -> str:
    """Each call's own caller number: logins at once from one number are throttled (the
    attempts reserve their slots before any check)."""
    return f"9{n:07d}"


async def open_call(client: BackendClient, n: int) -> int:
    uniqueid = f"{time.time():.0f}.{uuid.uuid4().int % 10**9}"
    opened = await client.open_call(uniqueid, "39023333", caller(n), f"PJSIP/t-{n}", "en")
    return opened.call_id


def database_cpu_s(database_pid: int | None) -> float:
    """CPU seconds of the database server's processes so far (0: SQLite, inside the backend)."""
    return tree_cpu_s(database_pid) if database_pid else 0.0


@dataclass
class Side:
    """A backend measured: its database (None: SQLite of its own), the tree it runs from (None:
    this one), and its CPU milliseconds (backend, database server) per request, by endpoint."""

    db_url: str | None
    tree: Path | None = None
    results: dict[str, tuple[float, float]] = field(default_factory=dict)


async def measure(sides: list[Side], calls: int, database_pid: int | None = None) -> None:
    """CPU milliseconds of each side's backend and of the database server (PostgreSQL's
    processes, `database_pid`'s tree; 0 for SQLite, inside the backend) per request, by
    endpoint, one request at a time. Two sides take turns in blocks of BLOCK requests, so the
    host's drift falls on both alike."""
    async with contextlib.AsyncExitStack() as stack:
        running = [
            await stack.enter_async_context(backend_for(side.db_url, calls, tree=side.tree))
            for side in sides
        ]
        call_ids: list[list[int]] = [[] for _ in sides]

        async def step(name: str, request: Request) -> None:
            spent = [[0.0, 0.0] for _ in sides]
            for first in range(0, calls, BLOCK):
                for k, (backend, client, truckers) in enumerate(running):
                    before, database_before = backend.cpu_s(), database_cpu_s(database_pid)
                    for n in range(first, min(first + BLOCK, calls)):
                        await request(client, call_ids[k], n, truckers[n])
                    spent[k][0] += backend.cpu_s() - before
                    spent[k][1] += database_cpu_s(database_pid) - database_before
            for side, (backend_s, database_s) in zip(sides, spent, strict=True):
                side.results[name] = (backend_s / calls * 1000, database_s / calls * 1000)

        async def opened(client: BackendClient, ids: list[int], n: int, t: Trucker) -> None:
            ids.append(await open_call(client, n))

        await step("health (no database)", lambda c, ids, n, t: c._request("GET", "/v1/health"))
        await step("open call", opened)
        await step(
            "login",
            lambda c, ids, n, t: c.login(t.account, PASSWORD, t.code(), ids[n], caller(n)),
        )
        await step("check cargo", lambda c, ids, n, t: c.check_cargo(t.ccrn))
        await step(
            "bundle",
            lambda c, ids, n, t: c.bundle(
                t.account, VEHICLE, [t.ccrn], ids[n], f"bench-{uuid.uuid4()}"
            ),
        )
        await step(
            "end call, with the call's 40 events",
            lambda c, ids, n, t: c.end_call(
                ids[n],
                *("completed", "goodbye", t.account, "en"),
                call_events(datetime.now(UTC), t.account),
            ),
        )


async def measure_at_once(
    db_url: str | None, calls: int, at_once: int, workers: int, database_pid: int | None = None
) -> dict[str, float]:
    """The same requests as whole calls (open, login, cargo, bundle, end with the call's
    events), `at_once` calls at a time: the backend alone at its limit."""
    async with backend_for(db_url, calls, workers) as (backend, client, truckers):
        gate = asyncio.Semaphore(at_once)

        async def call(n: int, t: Trucker) -> None:
            async with gate:
                call_id = await open_call(client, n)
                events = call_events(datetime.now(UTC), t.account)
                await client.login(t.account, PASSWORD, t.code(), call_id, caller(n))
                await client.check_cargo(t.ccrn)
                await client.bundle(t.account, VEHICLE, [t.ccrn], call_id, f"b-{uuid.uuid4()}")
                await client.end_call(call_id, "completed", "goodbye", t.account, "en", events)

        cpu, database, started = backend.cpu_s(), database_cpu_s(database_pid), time.perf_counter()
        await asyncio.gather(*(call(n, t) for n, t in enumerate(truckers)))
        wall, cpu = time.perf_counter() - started, backend.cpu_s() - cpu
        database = database_cpu_s(database_pid) - database
    return {
        "calls_per_s": calls / wall,
        "busy": cpu / wall,
        "cpu_per_call_ms": cpu / calls * 1000,
        "database_per_call_ms": database / calls * 1000,
    }


async def run(args: argparse.Namespace) -> tuple[list[Side], dict[str, float] | None]:
    trees = [None, *([args.against] if args.against else [])]

    async def both(fresh: Callable[[], Any], database_pid: int | None) -> Any:
        async with contextlib.AsyncExitStack() as stack:  # a database of each side's own
            sides = [Side(await stack.enter_async_context(fresh()), tree) for tree in trees]
            await measure(sides, args.calls, database_pid)
        if not args.at_once:
            return sides, None
        async with fresh() as url:
            return sides, await measure_at_once(
                url, args.calls, args.at_once, args.workers, database_pid
            )

    if args.postgres:
        sys.path.insert(0, REPOSITORY)
        from harness.postgres import start_postgres

        server = await asyncio.to_thread(start_postgres)
        try:
            postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
            return await both(server.database, postmaster)  # type: ignore[no-any-return]
        finally:
            await asyncio.to_thread(server.stop)
    return await both(_no_url, None)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def _no_url() -> AsyncIterator[None]:
    yield None  # SQLite: each measure makes a database of its own


def table(sides: list[Side], against: Path | None) -> list[str]:
    """The per-request table: one column pair, or each of a pair "this tree / the other"."""
    names = list(sides[0].results)

    def cells(name: str, part: int) -> str:
        return " / ".join(f"{side.results[name][part]:.1f}" for side in sides) + " ms"

    def total(part: int) -> str:
        sums = [sum(side.results[n][part] for n in names if "health" not in n) for side in sides]
        return "**" + " / ".join(f"{ms:.1f}" for ms in sums) + " ms**"

    heading = f" (this tree / {against})" if against else ""
    lines = [
        f"| request | backend CPU{heading} | database server CPU{heading} |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {cells(name, 0)} | {cells(name, 1)} |" for name in names]
    lines.append(f"| **a bundling call** | {total(0)} | {total(1)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="requests of each kind (200)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL")
    parser.add_argument(
        "--against",
        metavar="TREE",
        type=lambda tree: Path(tree).absolute(),
        help="another checkout of the repository (git worktree add): its backend measured too, "
        f"the two taking turns every {BLOCK} requests",
    )
    parser.add_argument(
        "--at-once", type=int, default=0, help="then whole calls, this many at a time (0: no)"
    )
    parser.add_argument("--workers", type=int, default=1, help="backend processes for --at-once")
    args = parser.parse_args(argv)
    sides, at_once = asyncio.run(run(args))
    print("\n".join(table(sides, args.against)))
    if at_once:
        print(
            f"\n{args.calls} calls, {args.at_once} at once, {args.workers} backend process(es): "
            f"{at_once['calls_per_s']:.1f} calls/s, backend busy {at_once['busy']:.0%} of a core, "
            f"{at_once['cpu_per_call_ms']:.1f} ms of backend CPU a call, "
            f"{at_once['database_per_call_ms']:.1f} ms of the database server's"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
