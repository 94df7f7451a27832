"""The IVR's side of a backend outage, part by part: the circuit breaker (on its own clock, then
in the real client against a stopped and a silent backend), the spool on disk (torn lines,
leftovers of a previous run, one process per directory), and delivery to the real backend:
leftovers delivered at start-up in order, and a batch delivered twice stored once (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from backend.app import RunningBackend
from backend.database import Database
from backend.models import Call
from backend_client import BackendClient, BackendError, BackendUnavailable, CallOpened, CircuitOpen
from backend_client.breaker import BreakerState, CircuitBreaker
from backend_client.call_log import CallLogOutbox, CallOpening, deliver
from backend_client.spool import Spool, SpoolBusy, read_segment
from ivr.server import start_agi_server
from ivr.settings import IvrSettings
from tests.support.databases import DATABASES
from tests.support.servers import CountingBackendClient, closed_port
from tests.support.stored import stored_events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the breaker on its own --------------------------------------------------------------------


def test_breaker_opens_after_failures_in_a_row_and_lets_one_probe_through_later() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.failed()  # the third in a row
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow() and breaker.retry_in() == 10

    clock.now += 10
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still fails fast while it is out
    breaker.failed()
    assert breaker.state is BreakerState.OPEN and breaker.retry_in() == 10  # another round

    clock.now += 10
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(5))


def test_a_success_between_failures_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=2, reset_s=5, clock=Clock())
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state is BreakerState.CLOSED


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_s=1, clock=clock)
    breaker.failed()
    clock.now += 1
    assert breaker.allow()
    breaker.abandoned()  # its caller hung up: no verdict
    assert breaker.allow()


# --- the breaker in the real client -------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_backend() -> AsyncIterator[str]:
    """A backend that accepts connections and never answers (a hung process)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in held:
            writer.close()


async def test_requests_fail_fast_once_a_silent_backend_has_timed_out_enough() -> None:
    async with silent_backend() as url:
        client = BackendClient(url, "token", timeout=0.3, breaker=CircuitBreaker(2, 60))
        async with client:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(BackendUnavailable):
                    await client.add_events(1, [])  # not retried: one timeout each
                assert time.monotonic() - started >= 0.3
            started = time.monotonic()
            with pytest.raises(CircuitOpen):
                await client.terms_version()
            assert time.monotonic() - started < 0.05


@contextlib.asynccontextmanager
async def busy_backend(
    delay: float | None = None,
) -> AsyncIterator[tuple[str, list[str], Callable[[int], Awaitable[bool]]]]:
    """A backend that answers GET /v1/health at once, and holds every other request (it is busy
    with them) until the returned event is set, or for `delay` seconds; the paths it has
    received so far."""
    received: list[str] = []
    release, arrived = asyncio.Event(), asyncio.Condition()

    async def handle(request: web.Request) -> web.Response:
        received.append(request.path)
        async with arrived:
            arrived.notify_all()
        if request.path != "/v1/health":
            await (asyncio.sleep(delay) if delay else release.wait())
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:

        async def until_received(count: int) -> bool:
            async with arrived:
                return await arrived.wait_for(lambda: len(received) >= count)

        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received, until_received
    finally:
        release.set()
        await runner.cleanup()


async def test_a_busy_backend_that_still_answers_never_opens_the_breaker() -> None:
    async with busy_backend() as (url, _received, until_received):
        client = BackendClient(url, "token", timeout=2, breaker=CircuitBreaker(2, 60))
        async with client:
            held = [asyncio.create_task(client.add_events(n, [])) for n in range(5)]
            await until_received(5)  # all five sent and queued in the backend
            await client._request("GET", "/v1/health")  # answered meanwhile: busy, not down
            for request in held:  # five timeouts, more than the breaker's two
                with pytest.raises(BackendUnavailable):
                    await request
            assert client.breaker.state is BreakerState.CLOSED
            await client._request("GET", "/v1/health")


async def test_requests_queue_for_a_connection_instead_of_timing_out() -> None:
    """More requests than connections: those queued wait for one, and their timeout counts
    from when they are sent, so all are answered though together they take longer than it."""
    async with busy_backend(delay=1.0) as (url, received, until_received):
        client = BackendClient(url, "token", timeout=2.5, connections=2)
        async with client:
            requests = [asyncio.create_task(client.add_events(n, [])) for n in range(6)]
            await until_received(2)
            assert len(received) == 2  # the others wait for a connection, not in the backend
            await asyncio.gather(*requests)  # three rounds of 1 s: over the 2.5 s timeout
            assert len(received) == 6


async def test_connections_reset_by_the_backend_open_the_breaker() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()  # RST: a process that dies as it takes the connection

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with BackendClient(url, "token", breaker=CircuitBreaker(2, 60)) as client:
            for _ in range(2):
                with pytest.raises(BackendUnavailable) as failed:
                    await client.add_events(1, [])
                assert not isinstance(failed.value, CircuitOpen)
            with pytest.raises(CircuitOpen):
                await client.add_events(1, [])
    finally:
        server.close()


async def test_refused_connections_open_the_breaker_and_a_probe_closes_it(
    backend: RunningBackend,
) -> None:
    clock = Clock()
    client = BackendClient(
        f"http://127.0.0.1:{await closed_port()}",
        backend.settings.api_token,
        breaker=CircuitBreaker(3, 5, clock=clock),
    )
    async with client:
        with pytest.raises(BackendUnavailable):
            await client.terms_version()  # a safe request: two refused attempts
        with pytest.raises(BackendUnavailable):
            await client.add_events(1, [])  # the third failure in a row
        with pytest.raises(CircuitOpen):
            await client.terms_version()
        assert client.breaker.state is BreakerState.OPEN

    client = replace(client, base_url=backend.url, _session=None)  # the backend is back
    async with client:
        with pytest.raises(CircuitOpen):
            await client.terms_version()  # not before reset_s
        clock.now += 5
        assert await client.terms_version()  # the probe, answered
        assert client.breaker.state is BreakerState.CLOSED


async def test_an_error_answer_does_not_count_against_the_backend(backend: RunningBackend) -> None:
    client = BackendClient(backend.url, "wrong-token", breaker=CircuitBreaker(1, 60))
    async with client:
        for _ in range(3):
            with pytest.raises(Exception) as refused:
                await client.terms_version()
            assert not isinstance(refused.value, BackendUnavailable)  # 401: an answer
        assert client.breaker.state is BreakerState.CLOSED


async def test_the_latency_summary_names_each_kind_of_request_without_its_ids(
    backend: RunningBackend,
) -> None:
    """What the FastAGI server logs when it stops (agi_stopped): each request's p99, a call's
    id left out of its path, so the requests of every call are one kind."""
    async with BackendClient(backend.url, backend.settings.api_token) as client:
        for n in range(3):
            opened = await client.open_call(**opening(n))
            await client.end_call(opened.call_id, "completed", "goodbye", None, "en", [])
        summary = client.latency_summary()
    assert summary["backend_answers"] == 6
    by_request = summary["backend_p99_ms_by_request"]
    assert sorted(by_request) == ["POST /v1/calls", "POST /v1/calls/{id}/end"]
    assert all(0 < ms <= summary["backend_p99_ms"] for ms in by_request.values())


async def test_request_bodies_are_written_whole_by_orjson_or_else_the_standard_library(
    backend: RunningBackend, db: Database
) -> None:
    """formats.json_text: an integer beyond 64 bits (orjson refuses it) and non-ASCII text go
    as JSON allows, as json.dumps wrote them."""
    detail = {"big": 10**30, "text": "字", "list": [1, 2.5, None, True]}
    event = {"at": "2025-03-03T10:00:05+08:00", "kind": "input", "name": "menu", "detail": detail}
    async with BackendClient(backend.url, backend.settings.api_token) as client:
        opened = await client.open_call(**opening(5))
        await client.end_call(opened.call_id, "completed", "goodbye", None, "en", [event])
    _, stored = await stored_events(db, "1700000000.5")
    assert [(e.name, e.detail) for e in stored] == [("menu", detail)]


# --- openings in a burst -----------------------------------------------------------------------


def opening(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "uniqueid": f"1700000000.{n}",
        "hotline": "39023333",
        "caller_id": f"9{n:07d}" if n % 2 else None,
        "channel": None,
        "language": None,
    } | fields


async def test_openings_that_come_together_go_together_each_with_its_own_answer(
    backend: RunningBackend, db: Database
) -> None:
    client = CountingBackendClient(backend.url, backend.settings.api_token)
    async with client:
        answers = await asyncio.gather(*(client.open_call(**opening(n)) for n in range(250)))
    # OPENINGS_AT_ONCE alone at once; the rest waited for them, then went OPENINGS_PER_REQUEST
    # a request.
    assert client.requests == 4 * ["POST /v1/calls"] + 3 * ["POST /v1/calls/batch"]
    async with db.sessions() as session:
        stored = dict((await session.execute(select(Call.uniqueid, Call.id))).all())
    assert [a.call_id for a in answers] == [stored[opening(n)["uniqueid"]] for n in range(250)]


async def test_one_refused_opening_does_not_refuse_those_sent_with_it(
    backend: RunningBackend,
) -> None:
    client = CountingBackendClient(backend.url, backend.settings.api_token)
    bad = opening(5, channel="not a channel;")
    async with client:
        answers = await asyncio.gather(
            *(client.open_call(**opening(n)) for n in range(5)),
            client.open_call(**bad),
            return_exceptions=True,
        )
    assert all(isinstance(a, CallOpened) for a in answers[:5])
    assert isinstance(answers[5], BackendError) and answers[5].code == "invalid_request"
    # refused whole, then each alone
    assert client.requests[4:] == ["POST /v1/calls/batch", "POST /v1/calls", "POST /v1/calls"]


async def test_openings_together_fail_together_when_the_backend_is_down() -> None:
    client = BackendClient(f"http://127.0.0.1:{await closed_port()}", "token", retries=0)
    async with client:
        answers = await asyncio.gather(
            *(client.open_call(**opening(n)) for n in range(10)), return_exceptions=True
        )
    assert all(isinstance(a, BackendUnavailable) for a in answers)
    assert not client.congested  # nothing left waiting


async def test_a_malformed_answer_to_openings_leaves_no_caller_waiting() -> None:
    async def no_calls(_request: web.Request) -> web.Response:
        return web.json_response({"calls": []})

    app = web.Application()
    app.router.add_post("/{tail:.*}", no_calls)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with BackendClient(f"http://127.0.0.1:{runner.addresses[0][1]}", "token") as client:
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(client.open_call(**opening(n)) for n in range(6)), return_exceptions=True
                ),
                5,
            )
    finally:
        await runner.cleanup()
    assert [type(a) for a in answers] == 4 * [KeyError] + 2 * [ValueError]


# --- the spool ----------------------------------------------------------------------------------


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def record(n: int) -> dict[str, Any]:
    return {"op": "events", "n": n}


async def test_spooled_records_are_on_disk_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    await asyncio.gather(*(spool.append([record(n)]) for n in range(50)))  # group commits
    await spool.close()

    again = Spool(tmp_path)
    again.open()
    segment = await again.take()
    assert segment is not None
    assert [r["n"] for r in await again.read(segment)] == list(range(50))
    await again.append([record(50)])  # a new run writes a new segment, after the old one
    await again.remove(segment)
    newer = await again.take()
    assert newer is not None and newer.name > segment.name
    assert await again.read(newer) == [record(50)]
    await again.close()


async def test_a_torn_last_line_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    await spool.append([record(1), record(2)])
    (segment,) = spool.segments()
    with segment.open("ab") as file:
        file.write(b'{"op": "events", "n": 3, "ev')  # the crash came mid-write
    await spool.close()
    assert read_segment(segment) == [record(1), record(2)]


async def test_delivery_cut_short_keeps_only_what_is_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    await spool.append([record(n) for n in range(5)])
    segment = await spool.take()
    assert segment is not None
    await spool.rewrite(segment, [record(3), record(4)])
    assert read_segment(segment) == [record(3), record(4)]
    assert files_in(tmp_path) == [".lock", segment.name]
    await spool.close()


async def test_one_spool_directory_belongs_to_one_process(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    with pytest.raises(SpoolBusy):
        Spool(tmp_path).open()  # flock: another open file is refused like another process
    await first.close()
    second = Spool(tmp_path)
    second.open()
    await second.close()


# --- delivery to the real backend ---------------------------------------------------------------


def event(at: datetime, kind: str, name: str, **detail: Any) -> dict[str, Any]:
    return {"at": at.isoformat(), "kind": kind, "name": name, "detail": detail, "duration_ms": None}


async def test_the_end_takes_the_last_events_along_and_more_than_a_request_holds_goes_first(
    backend: RunningBackend, db: Database
) -> None:
    client = CountingBackendClient(backend.url, backend.settings.api_token)
    start = datetime.now(UTC)
    events = [event(start + timedelta(milliseconds=n), "prompt", f"p{n}") for n in range(620)]
    opening = asdict(CallOpening("1700000000.7", "39023333", None, None, "en"))
    ending = {"outcome": "completed", "last_stage": "goodbye", "account": None}
    try:
        await deliver(client, {"op": "end", "call": opening, "events": events, **ending}, {})
    finally:
        await client.close()
    call_id = (await stored_events(db, "1700000000.7"))[0].id
    assert client.requests == [
        "POST /v1/calls",
        f"POST /v1/calls/{call_id}/events",  # the first 500 (EVENTS_PER_REQUEST)
        f"POST /v1/calls/{call_id}/end",  # with the other 120
    ]
    call, stored = await stored_events(db, "1700000000.7")
    assert [e.name for e in stored] == [e["name"] for e in events]
    assert call.outcome == "completed"


async def test_leftovers_of_a_previous_run_are_delivered_in_order_at_start(
    backend: RunningBackend, db: Database, tmp_path: Path
) -> None:
    start = datetime.now(UTC)
    opening = asdict(CallOpening("1700000000.42", "39023333", "91234567", "PJSIP/a-1", "en"))
    stages = ["language", "login", "menu"]
    previous = Spool(tmp_path / "spool")
    previous.open()
    await previous.append(
        [
            {"op": "open", "call": opening},
            *(
                {
                    "op": "events",
                    "call": opening,
                    "events": [event(start + timedelta(seconds=n), "stage", stage)],
                }
                for n, stage in enumerate(stages)
            ),
            {
                "op": "end",
                "call": opening,
                "outcome": "backend_unavailable",
                "last_stage": "menu",
                "account": None,
            },
        ]
    )
    (segment,) = previous.segments()
    with segment.open("ab") as file:
        file.write(b'{"op": "events", "call"')  # the previous run died mid-write
    await previous.close()

    settings = replace(
        IvrSettings(),
        backend_url=backend.url,
        api_token=backend.settings.api_token,
        spool_dir=str(tmp_path / "spool"),
    )
    agi = await start_agi_server(settings, port=0)
    try:
        await asyncio.wait_for(agi.app.outbox.delivered(), 30)
    finally:
        await agi.stop(grace=0)

    call, events = await stored_events(db, "1700000000.42")
    assert [e.name for e in events] == stages
    assert call.outcome == "backend_unavailable" and call.ended_at is not None
    assert call.hotline == "39023333" and call.caller_id == "91234567"
    assert not Spool(tmp_path / "spool").segments()  # delivered, then removed


@pytest.mark.parametrize("database", DATABASES)
async def test_a_batch_delivered_twice_is_stored_once(
    backend: RunningBackend, db: Database, database: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC)
    batch = [event(start + timedelta(milliseconds=n), "prompt", f"p{n}") for n in range(4)]
    async with BackendClient(backend.url, backend.settings.api_token) as client:
        opening = ("1700000000.7", "39023333", None, None, "en")
        call_id = (await client.open_call(*opening)).call_id
        assert (await client.open_call(*opening)).call_id == call_id
        await client.add_events(call_id, batch[:3])
        await client.add_events(call_id, batch[:3])  # its answer was lost: sent again
        await client.add_events(call_id, batch)  # a spool re-delivered, one event new
        await asyncio.gather(*(client.add_events(call_id, batch) for _ in range(5)))  # racing

    _, events = await stored_events(db, "1700000000.7")
    assert [e.name for e in events] == ["p0", "p1", "p2", "p3"]


async def test_a_call_spools_from_its_first_failure_and_is_delivered_when_the_backend_returns(
    backend: RunningBackend, db: Database, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    down = BackendClient(
        f"http://127.0.0.1:{await closed_port()}",
        backend.settings.api_token,
        breaker=CircuitBreaker(5, reset_s=0.1),
    )
    outbox = CallLogOutbox(down, Spool(spool_dir), retry_s=0.05)
    await outbox.start()
    call_log = outbox.for_call(CallOpening("1700000000.9", "31532265", None, None, "zh_HK"))
    opened = call_log.open()
    start = datetime.now(UTC)
    call_log.add([event(start, "stage", "language")])
    with pytest.raises(BackendUnavailable):
        await opened  # the flow says error.service_unavailable
    call_log.add([event(start + timedelta(seconds=1), "prompt", "error.service_unavailable")])
    await call_log.end([], "backend_unavailable", "language", None)
    spooled = [r for segment in Spool(spool_dir).segments() for r in read_segment(segment)]
    assert spooled[0]["op"] == "open" and spooled[-1]["op"] == "end"
    events = [e["name"] for r in spooled for e in r.get("events", [])]
    assert events == ["language", "error.service_unavailable"]
    assert spooled[-1]["events"]  # the last events go with the end: one request

    down.base_url = backend.url  # the backend is back (a new session on the next request)
    await down.close()
    await asyncio.wait_for(outbox.delivered(), 30)
    await outbox.stop()
    await down.close()
    call, events = await stored_events(db, "1700000000.9")
    assert [e.name for e in events] == ["language", "error.service_unavailable"]
    assert call.outcome == "backend_unavailable" and call.language == "zh_HK"
    assert files_in(spool_dir) == [".lock"]  # delivered, then removed; nothing rejected


async def test_records_the_backend_refuses_are_kept_aside(
    backend: RunningBackend, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    client = BackendClient(backend.url, backend.settings.api_token)
    outbox = CallLogOutbox(client, Spool(spool_dir))
    await outbox.start()
    call_log = outbox.for_call(CallOpening("x" * 65, "39023333", None, None, "en"))  # too long
    with pytest.raises(Exception):  # noqa: B017 - refused (422), not unavailable
        await call_log.open()
    await call_log.end([], "completed", "menu", None)
    await outbox.stop()
    await client.close()
    rejected = [json.loads(line) for line in (spool_dir / "rejected.jsonl").read_text().split()]
    assert [r["op"] for r in rejected] == ["open", "end"]
    assert os.stat(spool_dir / "rejected.jsonl").st_mode & 0o777 == 0o600
