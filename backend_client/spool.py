"""A local spool for call-log records the backend could not take: append-only JSON lines, on
disk before `append` returns (fsync), read back in order when the backend returns.

The directory holds numbered segment files (`000000000001.jsonl`, ...). Records go to the newest
one; the deliverer takes the oldest (`take`), and the segment being written is closed first so
new records start the next one. A segment is removed once all its records are delivered. After a
crash every file left is a segment to deliver: a last line cut short by the crash (torn) is
skipped, since it never reached the disk whole. Records the backend refuses outright go to
`rejected.jsonl`, kept for an operator rather than lost.

One directory belongs to one process: an exclusive lock (`flock`) on `.lock` says so, and a
second process on the same directory is refused (`SpoolBusy`).

File work runs in a thread, off the event loop; appends arriving while a write is under way are
written together with one fsync (group commit).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("backend_client.spool")

Record = dict[str, Any]
SUFFIX = ".jsonl"
REJECTED = "rejected.jsonl"


class SpoolBusy(Exception):
    """Another process holds this spool directory."""


class Spool:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self._lock_fd: int | None = None
        self._current: Path | None = None  # the segment being written, once there is one
        self._next_number = 1
        self._waiting: list[tuple[Path | None, str, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._files = asyncio.Lock()  # one file operation at a time

    # --- life ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and lock it for this process."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # call logs wait here: the owner's only
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(f"spool {self.directory} is in use by another process") from None
        self._lock_fd = fd
        for partial in self.directory.glob("*.partial"):  # a rewrite cut short: the segment holds
            partial.unlink()
        numbers = [int(p.stem) for p in self.segments()]
        self._next_number = max(numbers, default=0) + 1

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    # --- writing ------------------------------------------------------------------------------

    async def append(self, records: list[Record]) -> None:
        """Write `records` to the spool; returns once they are on disk."""
        await self._queue(None, records)

    async def reject(self, records: list[Record]) -> None:
        """Keep records the backend refused in `rejected.jsonl`, for an operator."""
        await self._queue(self.directory / REJECTED, records)

    async def _queue(self, path: Path | None, records: list[Record]) -> None:
        if not records:
            return
        data = "".join(_line(r) for r in records)
        written = asyncio.get_running_loop().create_future()
        self._waiting.append((path, data, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        # Shielded: a caller that goes away does not take its records off the disk.
        await asyncio.shield(written)

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            by_file: dict[Path | None, str] = {}
            for path, data, _ in batch:
                by_file[path] = by_file.get(path, "") + data
            try:
                async with self._files:
                    for path, data in by_file.items():
                        await asyncio.to_thread(self._write, path, data)
            except OSError as e:
                log.error("spool_write_failed", directory=str(self.directory), error=str(e))
                for *_, written in batch:
                    written.set_exception(e)
            else:
                for *_, written in batch:
                    written.set_result(None)

    def _write(self, path: Path | None, data: str) -> None:
        """In a thread: append `data` to `path` (None: the current segment) and fsync it."""
        if path is None:
            if self._current is None:
                self._current = self.directory / f"{self._next_number:012d}{SUFFIX}"
                self._next_number += 1
            path = self._current
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's name must survive a crash too
            self._sync_directory()

    # --- reading ------------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(p for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit())

    def pending(self) -> bool:
        return bool(self.segments())

    async def take(self) -> Path | None:
        """The oldest segment to deliver; the one being written is closed first."""
        async with self._files:
            segments = self.segments()
            if not segments:
                return None
            if segments[0] == self._current:
                self._current = None  # the next record starts a new segment
            return segments[0]

    async def read(self, segment: Path) -> list[Record]:
        return await asyncio.to_thread(read_segment, segment)

    async def remove(self, segment: Path) -> None:
        async with self._files:
            await asyncio.to_thread(segment.unlink, missing_ok=True)

    async def rewrite(self, segment: Path, records: list[Record]) -> None:
        """Replace a segment's records by `records` (those still to deliver), atomically."""
        async with self._files:
            await asyncio.to_thread(self._replace, segment, records)

    def _replace(self, segment: Path, records: list[Record]) -> None:
        partial = segment.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(_line(r) for r in records).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, segment)
        self._sync_directory()

    def _sync_directory(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _line(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), default=str) + "\n"


def read_segment(segment: Path) -> list[Record]:
    """The records of a segment file; a torn line (a crash mid-write) is skipped."""
    records = []
    for number, line in enumerate(segment.read_bytes().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("spool_line_torn", segment=segment.name, line=number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
