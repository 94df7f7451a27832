"""Call logs on their way to the backend: opened as the call starts, then ended with all its
events in one request (a call's events are sent before its end only past EVENTS_PER_REQUEST);
in order, and never lost.

Each call's records go out in order from a task of their own, off the caller's path. When the
backend cannot take one (down, timed out, or the circuit breaker open), it goes to the local
spool (spool.py), and so does the rest of that call, so its order holds; the deliverer, a
background task of the FastAGI server, sends the spool in order when the backend answers again,
and at start-up sends what a previous run left. Delivery twice is harmless: the backend opens a
call once per uniqueid, stores an event once (backend/call_logs.py), and the first end wins.

A record: {"op": "open" | "events" | "end", "call": the call's opening fields, ...}; an end
carries the call's last events (one request for both). It names its call by uniqueid, never by
the backend's id, which the deliverer gets by opening it again.
Events are already masked by the IVR: no secret reaches the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from backend_client import BackendClient, BackendError, BackendUnavailable, CallOpened
from backend_client.spool import REJECTED, Record, Spool, SpoolBusy

log = structlog.get_logger("backend_client.call_log")

# A call's events wait in memory for its end, which carries them; a call that has made this
# many before its end (a caller repeating a menu for minutes) sends them on (the API takes at
# most 1000 a request), so a call's memory stays bounded.
EVENTS_PER_REQUEST = 500
RETRY_S = 1.0  # the deliverer's pause after a failed try (longer while the breaker is open)
# Classic AGI processes (agi_scripts/) spool under the FastAGI server's spool directory, one
# directory per call; the server's deliverer looks for those left behind this often.
LEFT_SPOOLS = "classic-*"
LEFT_SPOOLS_EVERY_S = 60.0


@dataclass(frozen=True)
class CallOpening:
    """What the backend needs to open a call log (`POST /v1/calls`)."""

    uniqueid: str
    hotline: str
    caller_id: str | None
    channel: str | None
    language: str | None


async def deliver(
    client: BackendClient, record: Record, call_ids: dict[str, int]
) -> CallOpened | None:
    """Send one record; `call_ids` remembers (and learns) the backend's id of each uniqueid.
    The backend's answer to the opening, when this opened the call. Raises BackendUnavailable
    (try again later) or BackendError (refused: never will be)."""
    opening = record["call"]
    opened = None
    call_id = call_ids.get(opening["uniqueid"])
    if call_id is None:
        opened = await client.open_call(**opening)
        call_id = call_ids[opening["uniqueid"]] = opened.call_id
    events = record.get("events", [])
    # An end takes its call's last events along: one request, not two, at every call's end.
    along = (
        events[len(events) - len(events) % EVENTS_PER_REQUEST :] if record["op"] == "end" else []
    )
    for start in range(0, len(events) - len(along), EVENTS_PER_REQUEST):
        await client.add_events(call_id, events[start : start + EVENTS_PER_REQUEST])
    if record["op"] == "end":
        await client.end_call(
            call_id,
            record["outcome"],
            record["last_stage"],
            record["account"],
            record.get("language"),  # absent from records spooled by older versions
            along,
        )
    return opened


Reject = Callable[[list[Record], Exception], Awaitable[None]]


async def deliver_spool(client: BackendClient, spool: Spool, reject: Reject) -> None:
    """Deliver `spool`'s segments, oldest first, each removed once delivered; records the
    backend refuses go to `reject`. Raises BackendUnavailable, after taking what was delivered
    off the spool (it is not delivered twice)."""
    call_ids: dict[str, int] = {}
    while (segment := await spool.take()) is not None:
        records = await spool.read(segment)
        for done, record in enumerate(records):
            try:
                await deliver(client, record, call_ids)
            except BackendUnavailable:
                if done:
                    await spool.rewrite(segment, records[done:])
                raise
            except Exception as e:  # refused (BackendError), or a fault of ours
                await reject([record], e)
        await spool.remove(segment)
        log.info("call_log_spool_delivered", segment=str(segment), records=len(records))


async def deliver_left_spools(client: BackendClient, parent: Path) -> int:
    """Deliver the spools classic AGI processes left under `parent` (`classic-<uniqueid>/`,
    kept when the backend could not take that call's log), each whose process has ended (its
    lock is free), then remove it; one holding records the backend refused stays, for an
    operator. How many were delivered; raises BackendUnavailable (the rest waits)."""
    delivered = 0
    for directory in await asyncio.to_thread(_left_spools, parent):
        spool = Spool(directory)
        try:
            await asyncio.to_thread(spool.open)
        except (SpoolBusy, OSError):
            continue  # its call is still going on (or the directory is not ours to read)
        try:
            await deliver_spool(client, spool, _keeping_in(spool))
        finally:
            await spool.close()
        if not await asyncio.to_thread((directory / REJECTED).exists):
            await asyncio.to_thread(shutil.rmtree, directory, True)
        delivered += 1
    return delivered


def _left_spools(parent: Path) -> list[Path]:
    """Those holding records: a classic process writes its first only once it holds the lock,
    so one without any may be a process starting up, between making it and locking it."""
    return sorted(d for d in parent.glob(LEFT_SPOOLS) if Spool(d).pending())


def _keeping_in(spool: Spool) -> Reject:
    async def reject(records: list[Record], error: Exception) -> None:
        code = error.code if isinstance(error, BackendError) else type(error).__name__
        log.error("call_log_refused", code=code, ops=[r["op"] for r in records])
        with contextlib.suppress(OSError):
            await spool.reject(records)

    return reject


@dataclass
class CallLog:
    """One call's log: `open`, `add` (kept for the end), `end` (waits until sent or spooled)."""

    opening: CallOpening
    outbox: CallLogOutbox
    call_id: int | None = None
    _records: deque[Record] = field(default_factory=deque)
    _sender: asyncio.Task[None] | None = None
    _spooling: bool = False
    _opened: asyncio.Future[CallOpened] | None = None
    _waiting: list[dict[str, Any]] = field(default_factory=list)  # events not queued yet
    _call: dict[str, Any] | None = None  # `opening` as a record's "call", made once

    def open(self) -> asyncio.Future[CallOpened]:
        """Open the call log now; the future gives the backend's answer (the call's id, the
        caller's remembered language, the service status), or raises BackendUnavailable."""
        self._opened = asyncio.get_running_loop().create_future()
        self._opened.add_done_callback(_consume_error)  # the call may end before asking
        self._push({"op": "open"})
        return self._opened

    def add(self, events: list[dict[str, Any]]) -> None:
        """Keep `events` for the end; past EVENTS_PER_REQUEST of them, send them now."""
        self._waiting += events
        if len(self._waiting) >= EVENTS_PER_REQUEST:
            self._push({"op": "events", "events": self._take_events()})

    def _take_events(self) -> list[dict[str, Any]]:
        events, self._waiting = self._waiting, []
        return events

    async def end(
        self,
        events: list[dict[str, Any]],
        outcome: str,
        last_stage: str,
        account: str | None,
        language: str | None = None,
    ) -> None:
        """The last events and the end; returns once all of the call's log is sent or spooled."""
        self._waiting += events
        self._push(
            {
                "op": "end",
                "outcome": outcome,
                "last_stage": last_stage,
                "account": account,
                "language": language,
                "events": self._take_events(),  # sent with the end
            }
        )
        if self._sender is not None:
            await asyncio.shield(self._sender)

    def _push(self, record: Record) -> None:
        if self._call is None:
            self._call = asdict(self.opening)
        self._records.append({**record, "call": self._call})
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
            self.outbox.senders.add(self._sender)
            self._sender.add_done_callback(self.outbox.senders.discard)

    async def _send(self) -> None:
        while self._records:
            record = self._records.popleft()
            if not self._spooling:
                try:
                    await self._deliver(record)
                    continue
                except BackendUnavailable as e:
                    self._opened_failed(e)
                    self._spooling = True
                    log.warning("call_log_spooled", call=self.opening.uniqueid, error=str(e))
                except Exception as e:  # refused (BackendError), or a fault of ours: kept aside
                    self._opened_failed(e)
                    await self.outbox.reject([record], e)
                    continue
            await self.outbox.spool([record])

    async def _deliver(self, record: Record) -> None:
        call_ids = {} if self.call_id is None else {self.opening.uniqueid: self.call_id}
        opened = await deliver(self.outbox.client, record, call_ids)
        self.call_id = call_ids[self.opening.uniqueid]
        if opened is not None and self._opened is not None and not self._opened.done():
            self._opened.set_result(opened)

    def _opened_failed(self, error: Exception) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(error)


def _consume_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class CallLogOutbox:
    """The FastAGI process's call logs: one `CallLog` per call, the spool, and the deliverer,
    which also delivers what classic AGI processes left (deliver_left_spools)."""

    def __init__(
        self,
        client: BackendClient,
        spool: Spool,
        retry_s: float = RETRY_S,
        left_spools_every_s: float = LEFT_SPOOLS_EVERY_S,
    ):
        self.client = client
        self._spool = spool
        self.retry_s = retry_s
        self.left_spools_every_s = left_spools_every_s
        self.senders: set[asyncio.Task[None]] = set()
        self._spooled = asyncio.Event()  # something waits in the spool
        self._idle = asyncio.Event()  # the spool is empty: tests and shutdown wait on it
        self._deliverer: asyncio.Task[None] | None = None
        self.reject = _keeping_in(spool)

    def for_call(self, opening: CallOpening) -> CallLog:
        return CallLog(opening, self)

    async def start(self) -> None:
        """Lock the spool, and deliver what a previous run left there, in the background."""
        self._spool.open()
        if self._spool.pending():
            log.info("call_log_spool_found", segments=len(self._spool.segments()))
        else:
            self._idle.set()
        self._spooled.set()  # a first pass at once: our leftovers, and classic AGI's
        self._deliverer = asyncio.create_task(self._deliver_forever())

    async def stop(self) -> None:
        """Stop delivering; what is still spooled waits for the next start."""
        if self.senders:
            await asyncio.wait(list(self.senders))
        if self._deliverer is not None:
            self._deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deliverer
        await self._spool.close()

    async def delivered(self) -> None:
        """Wait until nothing is left in the spool."""
        await self._idle.wait()

    async def spool(self, records: list[Record]) -> None:
        try:
            await self._spool.append(records)
        except OSError as e:
            log.error("call_log_lost", records=len(records), error=str(e))
            return
        self._idle.clear()
        self._spooled.set()

    async def _deliver_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can drop the cancellation of stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.left_spools_every_s):
                    await self._spooled.wait()
            self._spooled.clear()
            try:
                await deliver_spool(self.client, self._spool, self.reject)
                await deliver_left_spools(self.client, self._spool.directory)
            except BackendUnavailable:
                self._spooled.set()  # still there: try again after a pause
                await asyncio.sleep(max(self.retry_s, self.client.breaker.retry_in()))
                continue
            if not self._spool.pending():
                self._idle.set()
