"""Call recordings: found on disk, served with HTTP Range, every playback and download audited.

Asterisk's MixMonitor writes `IVRS_RECORDINGS_DIR/<uniqueid>.wav`. A background task (and the
call page, for older calls) notes each file it finds in the `recordings` table, so the calls
list can filter on "has recording" without touching the disk.

How a playback is counted: the call page hands out a ticket per page view and purpose (play,
download), signed for this session and this call. The player fetches the file in many Range
requests (the start, then wherever the supervisor seeks); the first request with a play ticket
writes the audit entry, the others find the ticket used. Each download (a request from the
first byte) writes one; a resumed download does not. A request without a valid ticket gets
nothing, so no playback escapes the log. The player preloads nothing, so opening the page is
not a playback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Literal

import structlog
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.api import DATABASE
from backend.database import Database
from backend.models import Call, Recording

log = structlog.get_logger(__name__)

Purpose = Literal["play", "download"]
PURPOSES: tuple[Purpose, ...] = ("play", "download")
UNIQUEID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")  # never a path
FIND_EVERY = 60.0  # seconds between looks for new recordings
FIND_WITHIN = timedelta(days=2)  # the calls whose recordings are looked for
FIND_BATCH = 1000


def recording_path(recordings_dir: Path, uniqueid: str) -> Path | None:
    """Where the recording of `uniqueid` would be; None for an id that is not a plain name."""
    if not UNIQUEID.fullmatch(uniqueid):
        return None
    return recordings_dir / f"{uniqueid}.wav"


async def find_recording(db: Database, call: Call) -> Recording | None:
    """The call's recording: its row, or the file (then noted in a new row), or None."""
    async with db.sessions() as session:
        found = await session.scalar(select(Recording).where(Recording.call_id == call.id))
    if found is not None:
        return found
    path = recording_path(db.settings.recordings_dir, call.uniqueid)
    size = await asyncio.to_thread(_size, path) if path else None
    if size is None or path is None:
        return None
    recording = Recording(call_id=call.id, file_name=path.name, size_bytes=size, found_at=db.now())
    try:
        async with db.sessions.begin() as session:
            session.add(recording)
    except IntegrityError:  # noted meanwhile by the background task
        pass
    return recording


async def note_new_recordings(db: Database) -> int:
    """Rows for the recent calls whose recordings have appeared on disk; how many."""
    since = db.now() - FIND_WITHIN
    async with db.sessions() as session:
        calls = (
            await session.execute(
                select(Call.id, Call.uniqueid)
                .where(
                    Call.started_at >= since,
                    ~select(Recording.id).where(Recording.call_id == Call.id).exists(),
                )
                .limit(FIND_BATCH)
            )
        ).all()
    recordings_dir = db.settings.recordings_dir
    sizes = await asyncio.to_thread(
        lambda: {call_id: _size(recording_path(recordings_dir, u)) for call_id, u in calls}
    )
    now = db.now()
    found = [
        Recording(call_id=call_id, file_name=f"{uniqueid}.wav", size_bytes=size, found_at=now)
        for call_id, uniqueid in calls
        if (size := sizes[call_id]) is not None
    ]
    if found:
        try:
            async with db.sessions.begin() as session:
                session.add_all(found)
        except IntegrityError:  # the call page noted one meanwhile: the next round adds the rest
            return 0
    return len(found)


def _size(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size if stat.st_size > 0 else None


async def recordings_finder(app: web.Application) -> AsyncIterator[None]:
    """The backend app's background look for new recordings (in its cleanup_ctx, after the
    database, so it stops before the database closes)."""

    async def look_now_and_then() -> None:
        while True:
            await asyncio.sleep(FIND_EVERY)
            try:
                if found := await note_new_recordings(app[DATABASE]):
                    log.info("recordings_found", count=found)
            except Exception:
                log.exception("recordings_not_found")

    task = asyncio.create_task(look_now_and_then())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- tickets ----------------------------------------------------------------------------------


class Tickets:
    """Signed tickets: one page view's right to play or download one call's recording, in one
    session. The key is derived from the secret key (never stored)."""

    def __init__(self, secret_key: bytes) -> None:
        self._key = hmac.new(secret_key, b"ivrs console ticket v1", hashlib.sha256).digest()

    def issue(self, session_hash: str, call_id: int, purpose: Purpose) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{purpose}.{nonce}.{self._signature(session_hash, call_id, purpose, nonce)}"

    def check(self, ticket: str, session_hash: str, call_id: int) -> tuple[Purpose, str] | None:
        """(purpose, the ticket's audit key) when `ticket` is this session's for this call."""
        parts = ticket.split(".")
        if len(parts) != 3 or parts[0] not in PURPOSES or len(ticket) > 128:
            return None
        purpose, nonce, signature = parts
        expected = self._signature(session_hash, call_id, purpose, nonce)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        return purpose, f"{purpose}:{nonce}"  # type: ignore[return-value]

    def _signature(self, session_hash: str, call_id: int, purpose: str, nonce: str) -> str:
        message = f"{session_hash}|{call_id}|{purpose}|{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
