"""`ivrs backend --workers N` (backend/workers.py): N processes on one port, on PostgreSQL; a
worker that dies is started again; SIGTERM stops them all; SQLite is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

from bench.bench_calls import free_port
from bench.processes import children, cpu_ticks

pytestmark = pytest.mark.slow  # backend processes started, killed and restarted (~15 s)

API_TOKEN = "workers-test-token"


def backend_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "IVRS_DATABASE_URL": database_url,
        "IVRS_API_TOKEN": API_TOKEN,
        "IVRS_ARGON2_PROFILE": "test",
        "IVRS_SECRET_KEY": Fernet.generate_key().decode(),
        "IVRS_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "IVRS_LOG_LEVEL": "warning",
    }


async def healthy(url: str, timeout_s: float = 30) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout_s * 10)):
            try:
                async with http.get(f"{url}/v1/health") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def workers_up(parent: int, count: int) -> list[int]:
    for _ in range(300):
        pids = [p for p in children(parent) if _serving(p)]
        if len(pids) == count:
            return pids
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {count} workers: {children(parent)}")


def _serving(pid: int) -> bool:
    """A worker: not the spawn context's resource tracker (a child too), not a dead one the
    parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"resource_tracker" not in cmdline and state != "Z"


@pytest.fixture
async def two_workers(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "backend", "--port", str(port), "--workers", "2",
        env=backend_env(postgres_url, tmp_path),
    )  # fmt: skip
    try:
        await healthy(f"http://127.0.0.1:{port}")
        yield process.pid, f"http://127.0.0.1:{port}"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_two_workers_share_the_port_and_one_that_dies_is_started_again(
    two_workers: tuple[int, str],
) -> None:
    parent, url = two_workers
    first = await workers_up(parent, 2)
    before = {pid: cpu_ticks(pid) for pid in first}
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    # A connection of its own each time: the kernel spreads them. A request costs less than
    # a clock tick, so requests go on until each worker's CPU time has moved (or 1,000 sent).
    for _ in range(1000):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v1/terms", headers=headers) as reply:
                assert reply.status == 200
        if all(cpu_ticks(pid) > before[pid] for pid in first):
            break
    assert all(cpu_ticks(pid) > before[pid] for pid in first), "a worker got no request"

    os.kill(first[0], signal.SIGKILL)
    for _ in range(100):
        if not _serving(first[0]):
            break
        await asyncio.sleep(0.05)
    again = await workers_up(parent, 2)
    assert first[0] not in again and first[1] in again
    await healthy(url)


async def test_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    env = backend_env(f"sqlite+aiosqlite:///{tmp_path / 'ivrs.db'}", tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "backend", "--port", str(free_port()), "--workers", "2",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0 and b"needs PostgreSQL" in err
