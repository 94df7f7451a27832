"""Scale-out as Asterisk does it: two FastAGI servers behind `hagi://` (DNS SRV). The simulator
follows Asterisk's failover (simulator/failover.py): the next target only when a
connection fails. One server stopped during load: no call fails to start, and its live calls
finish."""

from __future__ import annotations

import asyncio
import random
import select
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from backend.app import RunningBackend
from backend.database import Database
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import Command, FailoverCall, SrvTarget, place_call_hagi, srv_order
from tests.support.servers import closed_port
from tests.support.stored import stored_bundles, stored_call
from tests.support.truckers import MakeTrucker, Trucker

CALLS = 40
AT_ONCE = 10
STOP_FIRST_AT = 8  # the first server stops when the 8th main menu prompt is played


@pytest.fixture
async def two_servers(
    backend: RunningBackend, tmp_path: Path
) -> AsyncIterator[tuple[RunningAgi, RunningAgi]]:
    running = []
    for name in ("first", "second"):
        settings = replace(
            IvrSettings(),
            backend_url=backend.url,
            api_token=backend.settings.api_token,
            backend_timeout=30,  # forty callers and two servers share two cores
            spool_dir=str(tmp_path / name / "spool"),  # one spool per server
        )
        running.append(await start_agi_server(settings, port=0))
    yield running[0], running[1]
    for server in running:
        await server.stop(grace=5)


async def test_a_burst_of_connections_waits_in_the_kernel_while_the_server_is_busy(
    ivr: RunningAgi,
) -> None:
    """Asterisk restarting connects thousands of calls at once. While the server's event loop
    is busy (here: not running at all), the kernel completes and queues them for it, up to its
    listen backlog; a connection past it would wait out a TCP retry (1 s, then 3 s)."""
    connections = [socket.socket() for _ in range(2500)]
    poller = select.poll()
    try:
        for connection in connections:
            connection.setblocking(False)
            connection.connect_ex((ivr.host, ivr.port))
            poller.register(connection, select.POLLOUT)
        established: set[int] = set()
        deadline = asyncio.get_running_loop().time() + 2
        while len(established) < len(connections) and asyncio.get_running_loop().time() < deadline:
            established |= {fd for fd, _ in poller.poll(100)}  # the loop blocked: nothing accepted
        assert len(established) == len(connections)
    finally:
        for connection in connections:
            connection.close()


def target(agi: RunningAgi, priority: int, weight: int = 0) -> SrvTarget:
    return SrvTarget(agi.host, agi.port, priority, weight)


async def test_one_of_two_servers_stopped_during_load_no_call_fails_to_start(
    two_servers: tuple[RunningAgi, RunningAgi], make_trucker: MakeTrucker, db: Database
) -> None:
    first, second = two_servers
    targets = [target(first, priority=10), target(second, priority=20)]
    truckers = await asyncio.gather(*(make_trucker(cargo=1) for _ in range(CALLS)))
    menus = 0
    stopping: list[asyncio.Task[None]] = []

    async def stop_first_during_load(command: Command) -> None:
        nonlocal menus
        if command.prompt_id == "vehicle.other_services":
            menus += 1
            if menus == STOP_FIRST_AT:  # its calls are live: they finish within the grace
                stopping.append(asyncio.create_task(first.stop(grace=60)))

    limit = asyncio.Semaphore(AT_ONCE)

    async def call(trucker: Trucker) -> FailoverCall:
        async with limit:
            return await place_call_hagi(
                targets,
                keys=trucker.bundle_keys(),
                totp=trucker.code_now,  # forty truckers, one login each
                on_command=stop_first_during_load,
            )

    calls = await asyncio.gather(*(call(t) for t in truckers))
    await asyncio.gather(*stopping)

    served = Counter("first" if c.server == targets[0] else "second" for c in calls)
    assert stopping and served["first"] >= AT_ONCE and served["second"] > 0
    # Every call started (the header went to a server that answered) and bundled.
    for c in calls:
        assert c.server is not None and c.record.agi_status == "SUCCESS"
        assert c.record.prompt_ids[0] == "language.menu"
        assert "bundle.submitted" in c.record.prompt_ids, c.record.prompt_ids[-3:]
        assert c.passed_over == ([targets[0]] if c.server == targets[1] else [])
        assert (await stored_call(db, c.record.uniqueid)).outcome == "completed"
    assert len(await stored_bundles(db)) == CALLS


async def test_no_server_taking_the_call_ends_agi_with_failure() -> None:
    targets = [SrvTarget("127.0.0.1", await closed_port(), 10)]
    targets.append(SrvTarget("127.0.0.1", await closed_port(), 20))
    call = await place_call_hagi(targets, keys="3")
    assert call.server is None and call.passed_over == targets
    assert call.record.agi_status == "FAILURE" and not call.record.exchanges


async def test_a_server_that_accepts_then_closes_keeps_the_call_no_failover(
    two_servers: tuple[RunningAgi, RunningAgi],
) -> None:
    """Asterisk fails over on connect failures only: a server that accepts has the call."""
    header: list[str] = []

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := (await reader.readline()).decode().rstrip("\n"):
            header.append(line)
        writer.close()

    broken = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = broken.sockets[0].getsockname()[1]
    try:
        _, second = two_servers
        targets = [SrvTarget("127.0.0.1", port, 10), target(second, priority=20)]
        call = await place_call_hagi(targets, keys="3")
    finally:
        broken.close()
    assert call.server == targets[0] and call.passed_over == []
    assert call.record.prompt_ids == []  # nothing was played: the dialplan's fallback follows
    assert "IVRS_STARTED" not in call.record.variables
    assert "agi_request: hagi://agi.example.com/ivrs" in header  # the URI as in the dialplan


def test_srv_order_is_by_priority_then_drawn_by_weight_as_asterisk_does() -> None:
    rng = random.Random(9)
    a, b, c = SrvTarget("a", 1, 10, 1), SrvTarget("b", 1, 10, 3), SrvTarget("c", 1, 5, 0)
    firsts: Counter[str] = Counter()
    for _ in range(3000):
        order = srv_order([a, b, c], rng)
        assert order[0] == c  # the lowest priority number first, whatever the weights
        firsts[order[1].host] += 1
    # main/srv.c draws r in 1..4 and takes the first record whose own weight is >= r: a on 1,
    # b on 2 or 3, a new draw on 4. So a leads one time in three (RFC 2782 would say one in 4).
    assert 0.30 < firsts["a"] / 3000 < 0.37
    assert srv_order([b, a], rng)[0] == b  # weight 3 listed first: 3 >= r for r in 1..3 always
    unweighted = [SrvTarget("x", 1, 20), SrvTarget("y", 1, 10), SrvTarget("z", 1, 20)]
    assert [t.host for t in srv_order(unweighted)] == ["y", "x", "z"]
