"""`ivrs` commands as child processes of a test, on a SQLite file of their own: for what only
the real process does (its settings read at start, its logs, the SMS it sends)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
KEY = Fernet.generate_key().decode()


def backend_env(tmp_path: Path, **env: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("IVRS_")}
    return kept | {
        "IVRS_SECRET_KEY": KEY,
        "IVRS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ivrs.db'}",
        "IVRS_ARGON2_PROFILE": "test",
        "IVRS_RECORDINGS_DIR": str(tmp_path / "recordings"),
        **env,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ivrs(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """`ivrs <args>`; its stderr (the logs) piped, its stdout dropped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def post_when_up(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> int:
    """POST once the server starting at `url` listens (up to 30 s); the answer's status."""
    deadline = time.monotonic() + 30
    while True:
        try:
            async with http.post(url, json=body) as reply:
                return reply.status
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
