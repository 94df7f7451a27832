"""The benchmarks' machinery, on small numbers: what they measure is what they say (timing goals
are the benchmarks' to report, not these tests')."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import cast

import pytest

from bench import bench_backend, bench_burst, bench_calls, bench_driver
from bench.bench_calls import TimedStreams, Trucker
from bench.processes import ServerProcess, port_after, python
from cli.bench import add_arguments
from simulator import CallRecord

pytestmark = pytest.mark.slow  # the benchmarks' every phase, on small numbers (~25 s)

SERVER_DELAY_S = 0.05


def slow_answerer(listener: socket.socket) -> None:
    """A server in a thread of its own: reads a line, waits SERVER_DELAY_S, answers."""
    conn, _ = listener.accept()
    with conn:
        conn.recv(100)
        time.sleep(SERVER_DELAY_S)
        conn.sendall(b'STREAM FILE welcome ""\n')
        conn.recv(100)  # until the client closes


async def test_a_round_trip_ends_when_the_kernel_receives_the_answer_not_when_it_is_read() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=slow_answerer, args=(listener,))
    server.start()
    gaps: list[float] = []
    try:
        streams = await TimedStreams.connect(listener.getsockname()[1], gaps)
        streams.write(b"200 result=0\n")
        await streams.drain()
        time.sleep(0.3)  # noqa: ASYNC251 (the simulator busy elsewhere: the answer waits)
        line = await streams.readline()
        streams.close()
    finally:
        server.join(5)
        listener.close()
    assert line == b'STREAM FILE welcome ""\n'
    assert len(gaps) == 1
    assert SERVER_DELAY_S <= gaps[0] < 0.25  # the server's delay; not the 0.3 s of reading late


async def test_the_server_under_test_keeps_a_core_the_other_children_are_pinned_away() -> None:
    # The server is a child of this process, like the backend and the database server whose
    # trees are pinned away from it: pinned before them, it was moved with them.
    server, other = [
        await ServerProcess.start(
            name,
            python("-c", "import time; print('listening 1', flush=True); time.sleep(60)"),
            {},
            port_after("listening"),
        )
        for name in ("server", "other")
    ]
    cores = sorted(os.sched_getaffinity(0))
    rest = set(cores[:-1]) or set(cores)  # one core: nothing to pin
    try:
        bench_calls.pin_under_test(server)
        assert os.sched_getaffinity(server.process.pid) == {cores[-1]}
        assert os.sched_getaffinity(other.process.pid) == rest
        assert os.sched_getaffinity(0) == rest
    finally:
        bench_calls.unpin()
        for process in (server, other):
            await process.stop()
    assert os.sched_getaffinity(0) == set(cores)


async def test_the_load_bench_runs_every_phase_on_small_numbers() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        "--calls 6 --concurrency 3 --classic 1 --classic-concurrency 1 --paced 6 --pace-ms 100 "
        "--window 1 --rounds 2 --held 8 --held-arrivals 100 --burst 20 --no-burst-real-time "
        "--floor-requests 100 "
        "--argon2-logins 1 --argon2-at-once 2".split()
    )
    results = await bench_calls.run(args)
    bundle, paced, floor, held = (results[k] for k in ("bundle", "paced", "floor", "held"))
    classic = results["classic"]
    assert (bundle["calls"], bundle["failed"], classic["calls"], classic["failed"]) == (6, 0, 2, 0)
    assert len(classic["calls_per_s_each"]) == 2  # before and after the bundling calls
    assert bundle["backend_per_call_ms"] > 0 and bundle["simulator_per_call_ms"] > 0
    assert bundle["machine_per_call_ms"] >= bundle["cpu_per_call_ms"]
    for measured in (paced, floor):
        assert measured["live"] == 6 and measured["failed"] == 0 and measured["commands"] > 0
        assert 0 < measured["gap_p50"] <= measured["gap_p99"] < 1
        assert len(measured["rounds_p99"]) == 2
    assert (held["held"], held["failed"], held["probe_ok"]) == (8, 0, True)
    burst, floor_backend, argon2 = (results[k] for k in ("burst", "backend_floor", "argon2"))
    assert (burst["calls"], burst["unavailable"], burst["failed"]) == (20, 0, 0)
    assert 0 < burst["think_p50"] <= burst["think_p99"]
    assert 0 <= floor_backend["empty_us"] < floor_backend["row_us"]  # CPU read in 10 ms ticks
    assert len(floor_backend["row_us_each"]) == 2  # before and after the bundling calls
    assert argon2["cpu_ms"] > 0 and argon2["one_peak_mib"] >= argon2["memory_kib"] / 1024 * 0.9
    table = bench_calls.report(results, args)
    assert "12× classic at this cost needs" in table and "nan" not in table
    # Open, login, cargo, bundle, end: all answered (the warm-up call's two not counted).
    assert bundle["backend_requests_per_call"] == 5
    assert {"POST /v1/sessions", "POST /v1/bundles"} <= set(bundle["backend_p99_by_request"])
    assert "(p99 by request: POST /v1/calls " in table
    assert "the first arriving over 1 s" in table  # --ramp's default
    assert "20 calls arriving at the same moment" in table and "logins/s per core" in table


async def test_a_burst_runs_against_the_server_then_the_floor_sending_its_commands() -> None:
    args = argparse.Namespace(
        calls=20, postgres=False, real_time=False, backend_workers=1, floor=True
    )
    result = await bench_burst.run(args)
    floor = result["floor"]
    assert (result["against"], floor["against"]) == ("server", "floor")
    for side in (result, floor):  # every call reached the account prompt: the same commands
        assert (side["calls"], side["failed"], side["unavailable"]) == (20, 0, 0)
    assert result["request_errors"] == Counter()


async def test_calls_at_once_arrive_spread_over_the_ramp_then_one_for_each_that_ends() -> None:
    limit, ramp, length = 4, 1.0, 0.9
    starts: list[float] = []
    live = peak = 0

    async def call(trucker: object) -> CallRecord:
        nonlocal live, peak
        starts.append(time.perf_counter())
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(length)
        live -= 1
        return CallRecord(uniqueid=str(trucker))

    truckers = [cast(Trucker, n) for n in range(6)]
    began = time.perf_counter()
    assert len(await bench_calls.at_once(limit, call, truckers, ramp)) == 6
    first = [start - began for start in starts[:limit]]
    # Evenly spread (0, 0.25, 0.5, 0.75 s), not all at the same moment; never more than `limit`.
    assert all(abs(at - n * ramp / limit) < 0.1 for n, at in enumerate(first))
    assert peak == limit
    # The fifth comes in when the first ends, not after a ramp of its own.
    assert starts[limit] - began == pytest.approx(length, abs=0.1)


@pytest.mark.timeout(180)
def test_the_backend_bench_prices_every_request_of_a_bundling_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_backend.main(["--calls", "10", "--at-once", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert "10 calls, 4 at once, 1 backend process(es): " in out
    names = [row.split(" | ")[0].removeprefix("| ") for row in rows[2:]]
    assert names == [
        "health (no database)",
        "open call",
        "login",
        "check cargo",
        "bundle",
        "end call, with the call's 40 events",
        "**a bundling call**",
    ]
    cpu_ms = [float(row.split(" | ")[1].strip("* ms|")) for row in rows[2:]]
    # A call is its five requests (each cell rounded to a tenth): the health check, a floor, is
    # not one of them.
    assert all(ms >= 0 for ms in cpu_ms) and cpu_ms[-1] == pytest.approx(sum(cpu_ms[1:-1]), abs=0.3)
    assert cpu_ms[-1] > 0  # /proc counts CPU in ticks of 10 ms: only the sum is sure to show


@pytest.mark.timeout(120)
def test_the_driver_bench_prices_a_read_each_way(capsys: pytest.CaptureFixture[str]) -> None:
    bench_driver.main(["--reads", "200", "--rounds", "2"])
    rounds = [line for line in capsys.readouterr().out.splitlines() if line.startswith("round")]
    assert len(rounds) == 2
    for line in rounds:
        backend_us, sqlalchemy_us, driver_us = (float(us) for us in re.findall(r"(\d+) µs", line))
        assert backend_us > 0 and sqlalchemy_us > 0 and driver_us > 0  # process CPU, in µs


@pytest.mark.timeout(180)
def test_the_backend_bench_measures_another_tree_in_turns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--against: a second backend, from the tree given (here this one again), on a database of
    its own; each cell holds both sides' CPU."""
    tree = str(Path(bench_calls.REPOSITORY))
    assert bench_backend.main(["--calls", "12", "--against", tree]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0] == (
        f"| request | backend CPU (this tree / {tree}) | database server CPU (this tree / {tree}) |"
    )
    cells = [row.split(" | ")[1].strip("* ms|").split(" / ") for row in rows[2:]]
    assert len(cells) == 7 and all(len(pair) == 2 for pair in cells)
    this, other = ([float(pair[k]) for pair in cells] for k in (0, 1))
    for side in (this, other):  # the total of five requests, each cell rounded to a tenth
        assert side[-1] == pytest.approx(sum(side[1:-1]), abs=0.3) and side[-1] > 0
