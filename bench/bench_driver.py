"""What a round trip to PostgreSQL costs the backend's process: the CPU of one-row reads through
the backend's connections (`Sessions.connect`: SQLAlchemy over asyncpg, a connection from the
pool, the statement, its result), through SQLAlchemy's own AsyncConnection, and through asyncpg
alone, one at a time, on a throwaway server.

    .venv/bin/python -m bench.bench_driver [--reads 2000] [--rounds 3]

Prints the CPU microseconds a read of each, per round (the host's speed drifts: compare within
a round).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import bindparam, select

from backend.database import Sessions, dispose, make_engines, upgrade_schema
from backend.models import Account
from harness.postgres import start_postgres

ONE_ROW = select(Account.number).where(Account.number == bindparam("number"))


async def cpu_us(read: Callable[[], Awaitable[object]], reads: int) -> float:
    for _ in range(50):  # warmed up: the pool's connections, the prepared statements
        await read()
    started = time.process_time()
    for _ in range(reads):
        await read()
    return (time.process_time() - started) / reads * 1e6


async def measure(reads: int, rounds: int) -> None:
    server = await asyncio.to_thread(start_postgres)
    try:
        async with server.database() as url:
            engine, reading = make_engines(url)  # reads on the autocommit pool, as the backend
            await upgrade_schema(engine)
            raw = await engine.raw_connection()
            driver = raw.driver_connection
            assert driver is not None

            backend = Sessions(engine, reading)

            def through(connect: Callable[[], Any]) -> Callable[[], Awaitable[object]]:
                """The one-row read on a connection from `connect`, given back after it."""

                async def read() -> object:
                    async with connect() as connection:
                        return await connection.scalar(ONE_ROW, {"number": "12345678"})

                return read

            async def through_asyncpg() -> object:
                sql = "SELECT number FROM accounts WHERE number = $1"
                return await driver.fetchval(sql, "12345678")

            for round_ in range(1, rounds + 1):
                backend_us = await cpu_us(through(backend.connect), reads)
                sqlalchemy_us = await cpu_us(through(reading.connect), reads)
                driver_us = await cpu_us(through_asyncpg, reads)
                print(
                    f"round {round_}: the backend's connection {backend_us:.0f} µs, "
                    f"SQLAlchemy's AsyncConnection {sqlalchemy_us:.0f} µs, "
                    f"asyncpg {driver_us:.0f} µs"
                )
            raw.close()
            await dispose(engine, reading)
    finally:
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.reads, args.rounds))


if __name__ == "__main__":
    main()
