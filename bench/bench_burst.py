"""Bursts: many callers arriving at the same moment (a suspension ends, Asterisk restarts). Every
call connects to one FastAGI server (`ivrs agi`) at once, against the backend (`ivrs backend`,
one process unless `--backend-workers`); each is answered, chooses its language, hears the
welcome and hangs up at the account prompt, so its backend requests are the call's start and
end (open call, service status, end call): those that pile up in a burst.

    .venv/bin/python -m bench.bench_burst --calls 1000 [--postgres] [--real-time]
    .venv/bin/python -m bench.bench_burst --calls 5000 --postgres --backend-workers 2 [--floor]
    .venv/bin/ivrs bench --burst 1000 ...        # the same phase, in the whole run

Measured: how many heard `error.service_unavailable`, how many failed otherwise, the think time
(the AGI round trip seen by the simulated Asterisk: from its reply to the server's next
command, the backend in it) p50 / p99, and how long the burst took to clear; with `--floor`,
the same against the floor (bench/floor.py), what any FastAGI server in one Python process
would have to beat.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.bench_calls import Stack, percentile, pin_under_test, start_stack, timed_call, unpin
from harness.postgres import start_postgres

BURST_KEYS = "3 !"  # language 3, then hang up at the account prompt
UNAVAILABLE = "error.service_unavailable"


async def burst_phase(
    stack: Stack, calls: int, real_time: bool = False, floor: bool = False
) -> dict[str, Any]:
    """`calls` calls started at the same moment against a fresh FastAGI server. Prompts take
    no time, unless `real_time`: then they play for their length (estimated from their text),
    as a caller hears them, and the call's opening request has the language menu's time.
    `floor`: against the floor instead (bench/floor.py, sending the commands of such a call
    and doing nothing else: no backend request, no call flow), pinned as the server is."""
    server = await stack.start_agi()
    if floor:
        commands_of = await timed_call(server.port, [], keys=BURST_KEYS)
        await server.stop()
        server = await stack.start_floor(commands_of)
        pin_under_test(server)
    gaps: list[float] = []
    go = asyncio.Event()

    async def call() -> Any:
        await go.wait()
        return await timed_call(server.port, gaps, keys=BURST_KEYS, real_time=real_time)

    tasks = [asyncio.create_task(call()) for _ in range(calls)]
    await asyncio.sleep(0)  # every task waiting at the gate
    assert stack.backend is not None
    backend_cpu, server_cpu, started = stack.backend.cpu_s(), server.cpu_s(), time.perf_counter()
    go.set()
    records = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - started
    backend_cpu, server_cpu = stack.backend.cpu_s() - backend_cpu, server.cpu_s() - server_cpu
    await server.stop()
    unpin()
    heard = [[] if isinstance(r, BaseException) else r.prompt_ids for r in records]
    unavailable = sum(UNAVAILABLE in ids for ids in heard)
    return {
        "calls": calls,
        "against": "floor" if floor else "server",
        "backend_workers": stack.backend_workers,
        "unavailable": unavailable,
        "failed": sum("login.account" not in ids and UNAVAILABLE not in ids for ids in heard),
        "errors": Counter(type(r).__name__ for r in records if isinstance(r, BaseException)),
        "think_p50": percentile(gaps, 0.5),
        "think_p99": percentile(gaps, 0.99),
        "think_max": max(gaps, default=float("nan")),
        "clear_s": wall,
        "backend_cpu_s": backend_cpu,
        "server_cpu_s": server_cpu,
        # Why the server's backend requests failed (backend_client's log), by error.
        "request_errors": Counter(
            e.get("error") for e in server.log if e.get("event") == "backend_request_failed"
        ),
    }


def burst_row(b: dict[str, Any], kind: str = "burst") -> tuple[str, ...]:
    """The bench table's row for a burst (bench_calls.report); kind: burst_real_time when its
    prompts played for their length."""
    met = b["unavailable"] == 0 and b["failed"] == 0 and b["think_p99"] <= 0.25
    prompts = (
        "prompts played for their length, as callers hear them"
        if kind == "burst_real_time"
        else "prompts take no time, so the wait for the call's opening request is in it"
    )
    against = " against the floor (no work)" if b.get("against") == "floor" else ""
    return (
        f"burst{against}: {b['calls']} calls arriving at the same moment (call start, "
        f"{b.get('backend_workers', 1)} backend process(es); {prompts})",
        f"{b['unavailable']} heard service unavailable, {b['failed']} failed otherwise; think "
        f"time p50 / p99 {b['think_p50'] * 1000:.0f} / {b['think_p99'] * 1000:.0f} ms; "
        f"cleared in {b['clear_s']:.1f} s",
        "",
        "",
        "0 unavailable, p99 ≤ 250 ms",
        "yes" if met else "**no**",
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async def on(url: str | None) -> dict[str, Any]:
        tmp = Path(tempfile.mkdtemp(prefix="ivrs-burst-"))
        stack = await start_stack(tmp, url, 1, args.backend_workers)
        try:
            result = await burst_phase(stack, args.calls, args.real_time)
            if args.floor:
                result["floor"] = await burst_phase(stack, args.calls, args.real_time, floor=True)
            return result
        finally:
            for server in stack.servers:
                await server.stop()
            assert stack.backend is not None
            await stack.backend.stop()

    if not args.postgres:
        return await on(None)
    server = await asyncio.to_thread(start_postgres)
    try:
        async with server.database() as url:
            return await on(url)
    finally:
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls at once (1000)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL")
    parser.add_argument(
        "--real-time", action="store_true", help="prompts play for their length (else: no time)"
    )
    parser.add_argument(
        "--backend-workers", type=int, default=1, help="`ivrs backend --workers N` (1)"
    )
    parser.add_argument(
        "--floor", action="store_true", help="then the same burst against the floor (no work)"
    )
    args = parser.parse_args(argv)
    if args.backend_workers > 1 and not args.postgres:
        parser.error("--backend-workers needs --postgres (backend processes share PostgreSQL only)")
    result = asyncio.run(run(args))
    kind = "burst_real_time" if args.real_time else "burst"
    print("| " + " | ".join(burst_row(result, kind)[:2]) + " |")
    if "floor" in result:
        print("| " + " | ".join(burst_row(result.pop("floor"), kind)[:2]) + " |")
    print({k: v for k, v in result.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
