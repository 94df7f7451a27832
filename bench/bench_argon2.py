"""The production password profile (RFC 9106 low-memory Argon2: t=3, 64 MiB, p=4) on its own,
so an operator can size a backend host for the morning peak: CPU and wall time per login, logins
per second per core, memory per login, and the memory ceiling with many logins at once (the
backend's hashing threads bound how many run together: backend/security.py).

    .venv/bin/python -m bench.bench_argon2 [--logins 10] [--at-once 50]

Each measure runs in a fresh process (`--child`) doing nothing else, which checks logins with
the backend's own `Passwords`, as a login does: its CPU time (all its threads: Argon2 runs its
lanes on threads of its own) and its peak resident memory over the idle process's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

PASSWORD = "246810"


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def child(password_hash: str, logins: int, at_once: int) -> dict[str, Any]:
    from backend.security import Passwords

    passwords = Passwords("rfc9106")
    idle_kib = rss_kib("VmRSS")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, started = usage.ru_utime + usage.ru_stime, time.perf_counter()
    for _ in range(logins // at_once):
        checks = [passwords.verify(password_hash, PASSWORD) for _ in range(at_once)]
        assert all(await asyncio.gather(*checks))
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu
    return {
        "cpu_ms": cpu / logins * 1000,
        "wall_ms": wall / logins * 1000,
        "peak_mib": (rss_kib("VmHWM") - idle_kib) / 1024,
    }


def run_child(password_hash: str, logins: int, at_once: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_argon2", "--child", password_hash]
        + ["--logins", str(logins), "--at-once", str(at_once)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.splitlines()[-1]))


def measure_argon2(logins: int, at_once: int) -> dict[str, Any]:
    """One login at a time (`logins` of them), then `at_once` logins together."""
    password_hash = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash(PASSWORD)
    one = run_child(password_hash, logins, 1)
    many = run_child(password_hash, at_once, at_once)
    return {
        "memory_kib": RFC_9106_LOW_MEMORY.memory_cost,
        "cpu_ms": one["cpu_ms"],
        "wall_ms": one["wall_ms"],
        "logins_per_core_s": 1000 / one["cpu_ms"],
        "one_peak_mib": one["peak_mib"],
        "at_once": at_once,
        "many_peak_mib": many["peak_mib"],
        "many_wall_ms": many["wall_ms"],
        "threads": min(32, (os.cpu_count() or 1) + 4),  # asyncio.to_thread's default pool
    }


def argon2_rows(a: dict[str, Any]) -> list[tuple[str, ...]]:
    """The bench table's rows (bench_calls.report)."""
    profile = f"RFC 9106 low-memory Argon2 (t=3, {a['memory_kib'] // 1024} MiB, p=4)"
    return [
        (
            f"a login's password check, {profile}: CPU (all threads) / wall, one at a time",
            f"{a['cpu_ms']:.0f} / {a['wall_ms']:.0f} ms",
            "",
            "",
            "",
            f"{a['logins_per_core_s']:.1f} logins/s per core",
        ),
        (
            f"backend memory for password checks: one login / {a['at_once']} at once "
            f"(peak RSS over idle)",
            f"{a['one_peak_mib']:.0f} / {a['many_peak_mib']:.0f} MiB",
            "",
            "",
            "",
            f"{a['many_wall_ms']:.0f} ms a login when {a['at_once']} come at once",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=10, help="logins one at a time (10)")
    parser.add_argument("--at-once", type=int, default=50, help="then logins at once (50)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the hash to check, in a child
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.logins, args.at_once))))
        return 0
    for row in argon2_rows(measure_argon2(args.logins, args.at_once)):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
