"""`ivrs bench`: the load benchmark of the FastAGI server and its baselines (bench/bench_calls.py).
The options live here, so building the `ivrs` parser imports nothing of the benchmark."""

from __future__ import annotations

import argparse


def add_bench_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="load benchmark: the FastAGI server against the floor and classic AGI (a few minutes)",
    )
    add_arguments(p)
    p.set_defaults(func=_bench)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=300, help="bundling calls (300)")
    parser.add_argument("--concurrency", type=int, default=50, help="bundling calls at once (50)")
    parser.add_argument(
        "--ramp",
        type=float,
        default=1.0,
        help="seconds over which the first calls at once arrive, for both (1, about a bundling "
        "call's length here; 0: at the same moment, a burst)",
    )
    parser.add_argument(
        "--classic",
        type=int,
        default=50,
        help="classic AGI calls, run twice: before and after the bundling calls (50)",
    )
    parser.add_argument(
        "--classic-concurrency",
        type=int,
        default=0,
        help="classic AGI calls at once (0: as many as --concurrency, the same load)",
    )
    parser.add_argument("--paced", type=int, default=500, help="paced calls at once (500)")
    parser.add_argument("--pace-ms", type=int, default=500, help="pause per command (500 ms)")
    parser.add_argument(
        "--arrivals", type=float, default=100, help="paced calls arriving per second (100)"
    )
    parser.add_argument(
        "--window", type=float, default=10, help="seconds measured with all paced calls live (10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="paced rounds, server then floor (3: medians)"
    )
    parser.add_argument("--held", type=int, default=2000, help="calls held at once (2000)")
    parser.add_argument(
        "--held-arrivals",
        type=float,
        default=40,
        help="held calls arriving per second (40: 2,000 calls of 50 s)",
    )
    parser.add_argument(
        "--burst", type=int, default=1000, help="calls arriving at the same moment (1000; 0: none)"
    )
    parser.add_argument(
        "--burst-real-time",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the burst again with prompts played for their length, as callers hear them (yes)",
    )
    parser.add_argument(
        "--floor-requests",
        type=int,
        default=1000,
        help="requests to the backend's floor (a do-nothing handler, a one-row query) (1000)",
    )
    parser.add_argument(
        "--argon2-logins",
        type=int,
        default=10,
        help="production-profile password checks, one at a time (10; 0: none)",
    )
    parser.add_argument(
        "--argon2-at-once", type=int, default=50, help="then password checks at once (50)"
    )
    parser.add_argument(
        "--database-url", help="the backend's database (default: SQLite in a temp directory)"
    )
    parser.add_argument(
        "--backend-workers",
        type=int,
        default=1,
        help="backend processes (1; more need --postgres or a PostgreSQL --database-url)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the backend on a throwaway PostgreSQL server (the tests' own: fsync off)",
    )


def _bench(args: argparse.Namespace) -> int:
    from bench.bench_calls import run_and_report

    return run_and_report(args)
