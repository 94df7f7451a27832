"""Load benchmark of the FastAGI server, with its two baselines measured in the same run: the
classic AGI script (a process per call) and the floor (a FastAGI server that does no work).

    .venv/bin/ivrs bench                          # python -m bench.bench_calls, the same
    .venv/bin/ivrs bench --calls 300 --concurrency 50 --paced 500 --held 2000 --classic 50

Every part is a process of its own, so none steals the others' event loop and each one's CPU
time and memory can be read: the backend (`ivrs backend`, SQLite in a temporary directory, or
--database-url), the FastAGI server (`ivrs agi`, a fresh one per phase), the floor
(bench/floor.py), the classic script (agi_scripts/ivrs_agi.py); the simulated Asterisk and its
callers run in this process. Prompts take no time (the simulator's virtual clock).

The phases, and what each measures:
- bundle: N bundling calls (language, login, vehicle, one CCRN, submit), C at once (the first
  C arriving over --ramp seconds, then each ending call replaced at once): completed
  calls per second, failed calls, the server's CPU per call and per AGI command, the backend's
  latency as the server's client measured it, the AGI round trip seen by the simulated
  Asterisk (from sending its reply to the kernel's receipt of the next command: TimedStreams)
  with the backend in it, the backend requests per call, and the whole machine's CPU per call
  by part (the database server's processes read on their own).
- classic: M of the same calls, each a process of its own, as many at once as the bundle
  phase's C (--classic-concurrency to change it), arriving as those do, right before and again
  right after the bundle phase (the host's speed drifts): calls per second, CPU per call, the
  mean of the two runs.
- paced: P calls arriving at --arrivals a second go to the language menu and press 0 (repeat)
  there, each command answered after a pause drawn around --pace-ms (a prompt playing); once
  all P are at the menu, the next --window seconds are measured: the AGI round trip added by the
  server (no backend request is made at this menu, so none is in it) and its CPU per AGI
  command; then the same calls against the floor, which sends the same commands, no work.
  Meanwhile the server under test has a core to itself (the simulator, the backend and the
  database server run on the others). --rounds rounds, fresh processes each: the medians.
- held: H calls held open at the language menu at once (the prompt still "playing"): the
  server's memory per held call, and the time of a whole bundling call while they are held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import resource
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyotp
from cryptography.fernet import Fernet

from backend import admin
from backend.database import open_database
from backend.security import password_hasher
from backend.settings import BackendSettings
from bench.processes import (
    CLOCK_TICKS,
    ServerProcess,
    children,
    json_port,
    port_after,
    python,
    tree_cpu_s,
)
from cli.bench import add_arguments
from formats import keypad_keys
from simulator import CallRecord, Command, SimulatedAsterisk, run_classic_agi

HOST = "127.0.0.1"
API_TOKEN = "bench-token"
PASSWORD = "246810"
VEHICLE = "AB1234"
ALL_CPUS = sorted(os.sched_getaffinity(0))
REPOSITORY = str(Path(__file__).resolve().parents[1])
MAX_CYCLES = 400  # menu repeats a paced caller has in its key script (it hangs up before)
# The warm-up call of a fresh server (Stack.start_agi), hung up at the language menu: its call
# log opened and ended. Not one of the calls measured.
WARM_UP_REQUESTS = 2
SPEEDUP_GOAL = 12  # completed bundling calls per second against classic AGI's, same load


@dataclass(frozen=True)
class Trucker:
    account: str
    seed: str
    ccrn: str

    def keys(self) -> str:
        letters = "".join(keypad_keys(c) for c in VEHICLE if c.isalpha())
        return f"3 {self.account}# {PASSWORD}# {{totp}}# {letters}# 1234# 1 {self.ccrn}# 2"

    def code(self) -> str:
        return pyotp.TOTP(self.seed, interval=60).now()


# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; Python's socket module does not name it): each
# read comes with the time the kernel received its data.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")


class TimedStreams:
    """The simulated Asterisk's side of a connection, timing each AGI round trip: from sending a
    reply (or the header) to the kernel's receipt of the server's next command (SO_TIMESTAMPNS).
    Timed on reading instead, a round trip would also hold the simulator's own delay in getting
    round to the socket, busy as it is with hundreds of other callers: its noise, not the
    server's. Reads and writes go straight to the non-blocking socket."""

    def __init__(self, sock: socket.socket, gaps: list[float]):
        self._sock, self._gaps = sock, gaps
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._sent_ns: int | None = None
        self._unsent = b""
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def connect(cls, port: int, gaps: list[float]) -> TimedStreams:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock, gaps)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(2**16, socket.CMSG_SPACE(TIMESPEC.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if data:
            self._buffer += data
            for level, kind, value in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS) and self._sent_ns:
                    seconds, nanoseconds = TIMESPEC.unpack(value[: TIMESPEC.size])
                    received_ns = seconds * 1_000_000_000 + nanoseconds
                    self._gaps.append((received_ns - self._sent_ns) / 1e9)
            self._sent_ns = None
        else:
            self._eof = True
            self._loop.remove_reader(self._sock.fileno())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def readline(self) -> bytes:
        while b"\n" not in self._buffer and not self._eof:
            self._waiter = self._loop.create_future()
            await self._waiter
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    def write(self, data: bytes) -> None:
        self._sent_ns = time.time_ns()  # the kernel's timestamps are wall-clock time too
        if not self._unsent:
            try:
                data = data[self._sock.send(data) :]
            except BlockingIOError:
                pass
            except OSError:
                return  # the server has gone: its end shows as the stream's end
        self._unsent += data

    async def drain(self) -> None:
        unsent, self._unsent = self._unsent, b""
        if unsent:
            with contextlib.suppress(OSError):
                await self._loop.sock_sendall(self._sock, unsent)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    async def wait_closed(self) -> None:
        pass


async def timed_call(port: int, gaps: list[float], **options: Any) -> CallRecord:
    """A simulated call whose round trips go into `gaps`."""
    streams = await TimedStreams.connect(port, gaps)
    return await SimulatedAsterisk(**options).run(streams, streams, host=HOST, port=port)  # type: ignore[arg-type]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def p99s(side: dict[str, Any]) -> str:
    return ", ".join(ms(p99) for p99 in side["rounds_p99"])


def pin_under_test(server: ServerProcess, keep_off: Sequence[int] = ()) -> None:
    """On two cores or more, the server under test (FastAGI or floor) runs on the last core
    and this process (the simulated Asterisk) on the others: else the simulator, busy with
    hundreds of callers, takes the server's CPU, and its waits show as server round trips.
    So do the process trees of `keep_off` (the backend, the database server), when a phase
    measures the server's round trips: a database's background work (autovacuum after the
    bundling calls, checkpoints) would otherwise pause the server now and then.
    `unpin` undoes it."""
    if len(ALL_CPUS) >= 2:
        # The server last: it is this process's child, so the trees' pinning would move it.
        for pid in [os.getpid(), *keep_off]:
            set_tree_affinity(pid, set(ALL_CPUS[:-1]))
        server.pin({ALL_CPUS[-1]})


def unpin(keep_off: Sequence[int] = ()) -> None:
    for pid in [os.getpid(), *keep_off]:
        set_tree_affinity(pid, set(ALL_CPUS))


def set_tree_affinity(pid: int, cpus: set[int]) -> None:
    """`pid` and its descendants (their children made later inherit it) run on `cpus` only."""
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:  # it has just ended
        return
    for child in children(pid):
        set_tree_affinity(child, cpus)


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- the parts ----------------------------------------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    backend_env: dict[str, str]
    backend: ServerProcess | None = None
    truckers: list[Trucker] = field(default_factory=list)
    database_pid: int | None = None  # the database server's (PostgreSQL's postmaster), if any
    backend_workers: int = 1  # `ivrs backend --workers`
    servers: list[ServerProcess] = field(default_factory=list)  # stopped at the end, whatever

    @property
    def others(self) -> list[int]:
        """The processes of the stack besides the server under test and this one."""
        pids = [self.backend.process.pid] if self.backend else []
        return pids + ([self.database_pid] if self.database_pid else [])

    def database_cpu_s(self) -> float:
        """CPU seconds of the database server's processes so far (0: none, SQLite)."""
        if self.database_pid is None:
            return 0.0
        return tree_cpu_s(self.database_pid)

    @property
    def agi_env(self) -> dict[str, str]:
        assert self.backend is not None
        return {
            "IVRS_BACKEND_URL": f"http://{HOST}:{self.backend.port}",
            "IVRS_API_TOKEN": API_TOKEN,
            "IVRS_SPOOL_DIR": str(self.tmp / "spool"),
            "IVRS_LOG_FORMAT": "json",
            "IVRS_LOG_LEVEL": "info",  # as in production: one line per call
            "IVRS_SHUTDOWN_GRACE_S": "5",
        }

    async def start_agi(self, pinned: bool = True) -> ServerProcess:
        """A fresh FastAGI server, warmed up by one short call (a server runs for hours: its
        first call's one-off costs are not what is measured); `pinned`: see pin_under_test."""
        agi = await ServerProcess.start(
            "ivrs agi",
            python("-m", "cli.main", "agi", "--host", HOST, "--port", "0"),
            self.agi_env,
            json_port("agi_listening"),
        )
        self.servers.append(agi)
        if pinned:
            pin_under_test(agi)
        await timed_call(agi.port, [], keys=menu_keys(1))
        return agi

    async def start_floor(self, call: CallRecord) -> ServerProcess:
        """The floor (bench/floor.py) sending the very commands the server sent in `call`."""
        script = self.tmp / f"floor-commands-{len(self.servers)}.txt"
        script.write_text("".join(e.command + "\n" for e in call.exchanges))
        floor = await ServerProcess.start(
            "floor",
            python("-m", "bench.floor", "--commands", str(script)),
            {},
            port_after("listening"),
        )
        self.servers.append(floor)
        return floor


async def prepare_backend(
    database_url: str, tmp: Path, truckers: int
) -> tuple[dict[str, str], list[Trucker]]:
    """The backend's environment, and `truckers` accounts (a token, lodged cargo each) in its
    database, migrated first. Each has a registered mobile, as a returning trucker has since
    the first call after migration, so a bundle sends its confirmation SMS (the default "log"
    sender: recorded, not sent; a provider's HTTP request is not the backend's work)."""
    settings = BackendSettings(
        database_url=database_url,
        api_token=API_TOKEN,
        argon2_profile="test",
        secret_key=Fernet.generate_key(),
        recordings_dir=tmp / "recordings",
    )
    made = []
    async with open_database(settings) as db:
        first = 20_000_000 + random.Random().randrange(70_000_000 - truckers)
        for n, number in enumerate(range(first, first + truckers)):
            await admin.create_account(db, str(number), PASSWORD, mobile=str(91_000_000 + n))
            seed = await admin.add_token(db, str(number), expires_on=date(2029, 4, 30))
            made.append(Trucker(str(number), seed, await admin.lodge_cargo(db)))
    env = {
        "IVRS_DATABASE_URL": database_url,
        "IVRS_API_TOKEN": API_TOKEN,
        "IVRS_SECRET_KEY": settings.secret_key.decode(),
        "IVRS_ARGON2_PROFILE": "test",
        "IVRS_RECORDINGS_DIR": str(settings.recordings_dir),
        "IVRS_LOG_LEVEL": "warning",
    }
    return env, made


async def start_backend_process(
    env: dict[str, str], workers: int = 1, tree: Path | None = None
) -> ServerProcess:
    """`ivrs backend` (`workers` processes) on a free loopback port; from `tree`, another
    checkout of the repository, if given."""
    port = free_port()
    return await ServerProcess.start(
        "ivrs backend",
        python(
            *("-m", "cli.main", "backend", "--host", HOST, "--port", str(port)),
            *("--workers", str(workers)),
        ),
        env,
        lambda line: port if "Running on" in line else None,
        tree,
    )


async def start_stack(
    tmp: Path, database_url: str | None, truckers: int, backend_workers: int = 1
) -> Stack:
    env, made = await prepare_backend(
        database_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}", tmp, truckers
    )
    stack = Stack(tmp, env, truckers=made)
    stack.backend = await start_backend_process(env, backend_workers)
    stack.backend_workers = backend_workers
    return stack


# --- the phases ---------------------------------------------------------------------------------


async def at_once(
    limit: int,
    call: Callable[[Trucker], Awaitable[CallRecord]],
    truckers: list[Trucker],
    ramp_s: float,
) -> list[CallRecord]:
    """One call per trucker, `limit` at a time: the first `limit` arrive evenly over `ramp_s`
    seconds, then each call that ends lets the next one in. Arriving at the same moment they
    would be a burst (bench_burst measures those): their logins queue behind one another, and
    the slowest 1% of a phase's requests would all be theirs, not those of `limit` calls at
    once."""
    gate = asyncio.Semaphore(limit)

    async def one(n: int, trucker: Trucker) -> CallRecord:
        async with gate:  # taken in order: the first `limit` at once, their arrivals spread
            if n < limit:
                await asyncio.sleep(ramp_s * n / limit)
            return await call(trucker)

    return await asyncio.gather(*(one(n, t) for n, t in enumerate(truckers)))


def arrivals(ramp_s: float) -> str:
    return f"the first arriving over {ramp_s:g} s" if ramp_s else "the first at the same moment"


def bundled(record: CallRecord) -> bool:
    return "bundle.submitted" in record.prompt_ids and record.prompt_ids[-1] == "call.goodbye"


async def bundle_phase(
    stack: Stack, truckers: list[Trucker], concurrency: int, ramp_s: float
) -> dict[str, Any]:
    # Calls per second are the whole machine's: every process runs where the kernel puts it,
    # as in production and as classic AGI's processes do (pinned, the server and the
    # simulator would each keep a core that the backend and the database could not share).
    agi = await stack.start_agi(pinned=False)
    gaps: list[float] = []
    live = peak = 0

    async def call(trucker: Trucker) -> CallRecord:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        try:
            return await timed_call(agi.port, gaps, keys=trucker.keys(), totp=trucker.code)
        finally:
            live -= 1

    assert stack.backend is not None
    cpu, backend, database, simulator, machine = (
        agi.cpu_s(),
        stack.backend.cpu_s(),
        stack.database_cpu_s(),
        own_cpu_s(),
        machine_busy_s(),
    )
    started = time.perf_counter()
    records = await at_once(concurrency, call, truckers, ramp_s)
    wall = time.perf_counter() - started
    cpu = agi.cpu_s() - cpu
    backend = stack.backend.cpu_s() - backend
    database = stack.database_cpu_s() - database
    simulator = own_cpu_s() - simulator
    machine = machine_busy_s() - machine
    await agi.stop()
    unpin()
    commands = sum(len(r.exchanges) for r in records)
    stopped = agi.logged("agi_stopped")
    return {
        "calls": len(records),
        "failed": sum(not bundled(r) for r in records),
        "failed_endings": Counter(" ".join(r.prompt_ids[-2:]) for r in records if not bundled(r)),
        "calls_per_s": len(records) / wall,
        "peak": peak,
        "commands": commands,
        "cpu_per_call_ms": cpu / len(records) * 1000,
        "cpu_per_command_us": cpu / commands * 1e6,
        # The whole machine's CPU per call, by part: the rest is the database server's and
        # the kernel's (and anything else running meanwhile).
        "backend_per_call_ms": backend / len(records) * 1000,
        # The database server's processes (PostgreSQL); 0 with SQLite, inside the backend's.
        "database_per_call_ms": database / len(records) * 1000,
        "simulator_per_call_ms": simulator / len(records) * 1000,
        "machine_per_call_ms": machine / len(records) * 1000,
        "rest_per_call_ms": max(0.0, machine - cpu - backend - database - simulator)
        / len(records)
        * 1000,
        "machine_busy": machine / wall / len(ALL_CPUS),
        "gap_p50": percentile(gaps, 0.5),
        "gap_p99": percentile(gaps, 0.99),
        "backend_requests_per_call": (stopped.get("backend_answers", 0) - WARM_UP_REQUESTS)
        / len(records),
        "backend_p50_ms": stopped.get("backend_p50_ms", float("nan")),
        "backend_p99_ms": stopped.get("backend_p99_ms", float("nan")),
        "backend_p99_by_request": stopped.get("backend_p99_ms_by_request", {}),
    }


async def classic_phase(
    stack: Stack, truckers: list[Trucker], concurrency: int, ramp_s: float
) -> dict[str, Any]:
    env = {**stack.agi_env, "IVRS_LOG_LEVEL": "warning", "PYTHONDONTWRITEBYTECODE": "1"}
    argv = python("-m", "agi_scripts.ivrs_agi")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()

    def call(trucker: Trucker) -> Awaitable[CallRecord]:
        return run_classic_agi(
            argv,
            env={**os.environ, **env},
            stderr=asyncio.subprocess.DEVNULL,
            keys=trucker.keys(),
            totp=trucker.code,
        )

    records = await at_once(concurrency, call, truckers, ramp_s)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "calls": len(records),
        "failed": sum(not bundled(r) for r in records),
        "calls_per_s": len(records) / wall,
        "cpu_per_call_ms": cpu / len(records) * 1000,
        "concurrency": concurrency,
    }


def both_classic_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Classic AGI's runs before and after the bundling calls as one: their calls and failures
    added, their rates and CPU a call the mean of the two (a drift of the host's speed between
    them falls on the bundling calls by half), each run's rate kept for the table."""
    return {
        "calls": sum(run["calls"] for run in runs),
        "failed": sum(run["failed"] for run in runs),
        "calls_per_s": sum(run["calls_per_s"] for run in runs) / len(runs),
        "calls_per_s_each": [run["calls_per_s"] for run in runs],
        "cpu_per_call_ms": sum(run["cpu_per_call_ms"] for run in runs) / len(runs),
        "concurrency": runs[0]["concurrency"],
    }


def menu_keys(cycles: int) -> str:
    """At the language menu: 0 (repeat) `cycles` times, then hang up."""
    return " ".join(["0"] * cycles) + " !"


@dataclass
class Paced:
    """Round trips and CPU of paced calls, counted only while all of them are live."""

    gaps: list[float]
    commands: int
    cpu_s: float
    live: int
    records: list[CallRecord]
    simulator_busy: float  # the simulated Asterisk's CPU share meanwhile (1.0: a whole core)


async def paced_calls(
    server: ServerProcess, calls: int, pace_s: float, rate: float, window_s: float, seed: int
) -> Paced:
    """`calls` callers arriving at `rate` a second go to the language menu and press 0 there,
    each command answered after a pause around `pace_s`; once all are at the menu, the
    round trips of the next `window_s` seconds are kept; then they hang up."""
    rng = random.Random(seed)
    gaps: list[float] = []
    live, all_live, stop = 0, asyncio.Event(), asyncio.Event()

    async def call(start_after: float) -> CallRecord:
        await asyncio.sleep(start_after)
        at_menu = False

        async def pause(command: Command) -> None:
            nonlocal live, at_menu
            if command.prompt_id == "language.menu" and not at_menu:
                at_menu, live = True, live + 1
                if live == calls:
                    all_live.set()
            await asyncio.sleep(rng.uniform(0.5, 1.5) * pace_s)

        return await timed_call(
            server.port,
            gaps,
            keys=menu_keys(MAX_CYCLES),
            on_command=pause,
            hangup_at=lambda _c: stop.is_set(),
        )

    tasks = [asyncio.create_task(call(n / rate + rng.uniform(0, pace_s))) for n in range(calls)]
    waiting = asyncio.create_task(all_live.wait())
    await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    gaps.clear()
    cpu, simulator = server.cpu_s(), own_cpu_s()
    await asyncio.sleep(window_s)  # the measuring window
    window, cpu = list(gaps), server.cpu_s() - cpu
    simulator_busy = (own_cpu_s() - simulator) / window_s
    stop.set()
    records = await asyncio.gather(*tasks)
    waiting.cancel()
    return Paced(window, len(window), cpu, live, records, simulator_busy)


async def paced_phase(
    stack: Stack, calls: int, pace_s: float, rate: float, window_s: float, rounds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`rounds` rounds of the server then the floor, each a fresh process; per side, the
    median of the rounds (and the p99's range): one pause of the machine in one round (another
    process woken on the server's core, say) does not decide the result."""
    per_side: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for round_number in range(rounds):
        # The floor sends the very commands the server sends in such a call (cut short by the
        # caller's hang-up, as the server's would be).
        agi = await stack.start_agi()
        floor = await stack.start_floor(await timed_call(agi.port, [], keys=menu_keys(MAX_CYCLES)))
        for server, side in ((agi, per_side[0]), (floor, per_side[1])):
            pin_under_test(server, keep_off=stack.others)
            paced = await paced_calls(server, calls, pace_s, rate, window_s, seed=round_number)
            await server.stop()
            unpin(keep_off=stack.others)
            side.append(
                {
                    "calls": calls,
                    "live": paced.live,
                    "commands": paced.commands,
                    "gap_p50": percentile(paced.gaps, 0.5),
                    "gap_p99": percentile(paced.gaps, 0.99),
                    "cpu_per_command_us": paced.cpu_s / max(paced.commands, 1) * 1e6,
                    "failed": sum(r.prompt_ids[:1] != ["language.menu"] for r in paced.records),
                    "simulator_busy": paced.simulator_busy,
                }
            )
    return _median_round(per_side[0]), _median_round(per_side[1])


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each measure's median over the rounds; counts summed; the p99 of every round kept."""
    summed = ("commands", "failed")
    result = {
        key: sum(r[key] for r in rounds)
        if key in summed
        else statistics.median(r[key] for r in rounds)
        for key in rounds[0]
    }
    result["live"] = min(r["live"] for r in rounds)
    result["rounds_p99"] = [r["gap_p99"] for r in rounds]
    return result


async def held_phase(stack: Stack, calls: int, rate: float, probe: Trucker) -> dict[str, Any]:
    agi = await stack.start_agi()
    idle_mib = agi.rss_mib()
    held = 0
    all_held, release = asyncio.Event(), asyncio.Event()

    async def hold(command: Command) -> None:
        nonlocal held
        if command.prompt_id == "language.menu" and not release.is_set():
            held += 1
            if held == calls:
                all_held.set()
            await release.wait()

    async def call(start_after: float) -> CallRecord:
        await asyncio.sleep(start_after)
        return await timed_call(
            agi.port, [], keys="", on_command=hold, hangup_at=lambda _c: release.is_set()
        )

    tasks = [asyncio.create_task(call(n / rate)) for n in range(calls)]
    waiting = asyncio.create_task(all_held.wait())
    await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    held_mib = agi.rss_mib()
    started = time.perf_counter()
    record = await timed_call(agi.port, [], keys=probe.keys(), totp=probe.code)
    probe_s = time.perf_counter() - started
    peak = held
    release.set()
    records = await asyncio.gather(*tasks, return_exceptions=True)
    waiting.cancel()
    await agi.stop()
    unpin()
    return {
        "calls": calls,
        "held": peak,
        "failed": sum(isinstance(r, BaseException) for r in records) + (not bundled(record)),
        "idle_mib": idle_mib,
        "held_mib": held_mib,
        "kib_per_call": (held_mib - idle_mib) * 1024 / max(peak, 1),
        "probe_s": probe_s,
        "probe_ok": bundled(record),
    }


# --- the whole run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.postgres:  # the tests' throwaway server (tests/ is not installed: found beside us)
        sys.path.insert(0, REPOSITORY)
        from harness.postgres import start_postgres

        server = await asyncio.to_thread(start_postgres)
        try:
            async with server.database() as url:
                postmaster = (server.data_dir / "postmaster.pid").read_text().split()[0]
                return await run_on(args, url, int(postmaster))
        finally:
            await asyncio.to_thread(server.stop)
    return await run_on(args, args.database_url)


async def run_on(
    args: argparse.Namespace, database_url: str | None, database_pid: int | None = None
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ivrs-bench-"))
    stack = await start_stack(
        tmp, database_url, args.calls + 2 * args.classic + 1, args.backend_workers
    )
    stack.database_pid = database_pid
    # This process is the simulated Asterisk: its garbage collector's pauses show as round
    # trips; the set-up's objects (most of them) are left out of its passes.
    gc.collect()
    gc.freeze()
    results: dict[str, Any] = {}
    try:
        truckers = stack.truckers
        # Classic AGI and the backend's floor right before and right after the bundling calls:
        # the host's speed drifts within a run, and the goals are ratios to them.
        classic_truckers = truckers[args.calls : args.calls + 2 * args.classic]
        classic_concurrency = args.classic_concurrency or args.concurrency  # the same load
        classics = [
            await classic_phase(
                stack, classic_truckers[: args.classic], classic_concurrency, args.ramp
            )
        ]
        floors = [await backend_floor(stack, args)]
        results["bundle"] = await bundle_phase(
            stack, truckers[: args.calls], args.concurrency, args.ramp
        )
        floors.append(await backend_floor(stack, args))
        classics.append(
            await classic_phase(
                stack, classic_truckers[args.classic :], classic_concurrency, args.ramp
            )
        )
        results["backend_floor"] = {
            key: sum(floor[key] for floor in floors) / len(floors) for key in floors[0]
        } | {"row_us_each": [floor["row_us"] for floor in floors]}
        results["classic"] = both_classic_runs(classics)
        results["paced"], results["floor"] = await paced_phase(
            stack, args.paced, args.pace_ms / 1000, args.arrivals, args.window, args.rounds
        )
        results["held"] = await held_phase(stack, args.held, args.held_arrivals, truckers[-1])
        results.update(await backend_phases(stack, args))
    finally:
        gc.unfreeze()
        for server in stack.servers:  # those a phase left running: it was stopped (SIGTERM)
            await server.stop()
        assert stack.backend is not None
        await stack.backend.stop()
    return results


async def backend_phases(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """A burst of calls, and the production password profile on its own (bench_burst.py,
    bench_argon2.py)."""
    from bench.bench_argon2 import measure_argon2
    from bench.bench_burst import burst_phase

    results: dict[str, Any] = {}
    if args.burst:
        results["burst"] = await burst_phase(stack, args.burst)
        if args.burst_real_time:
            results["burst_real_time"] = await burst_phase(stack, args.burst, real_time=True)
    if args.argon2_logins:
        results["argon2"] = await asyncio.to_thread(
            measure_argon2, args.argon2_logins, args.argon2_at_once
        )
    return results


async def backend_floor(stack: Stack, args: argparse.Namespace) -> dict[str, float]:
    """CPU microseconds a request of the backend's floor (bench/backend_floor.py), at the
    bundling calls' concurrency, on the same database."""
    from bench.backend_floor import measure_floor

    return await measure_floor(stack.backend_env, HOST, args.floor_requests, args.concurrency)


def cheap_profile_check_us(checks: int = 200) -> float:
    """CPU microseconds of one password check on the cheap test profile the bench's backend
    uses, measured here: the goal prices a request with login's Argon2 left out."""
    hasher = password_hasher("test")
    password_hash = hasher.hash("246810")
    started = time.process_time()
    for _ in range(checks):
        hasher.verify(password_hash, "246810")
    return (time.process_time() - started) / checks * 1e6


def backend_rows(r: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, ...]]:
    from bench.bench_argon2 import argon2_rows
    from bench.bench_burst import burst_row

    b, floor = r["bundle"], r["backend_floor"]
    argon2_us = cheap_profile_check_us()  # one login a bundling call
    per_request_us = (b["backend_per_call_ms"] * 1000 - argon2_us) / max(
        b["backend_requests_per_call"], 1
    )
    ratio = per_request_us / max(floor["row_us"], 1.0)  # /proc's CPU ticks: 0 on few requests
    rows: list[tuple[str, ...]] = [
        (
            f"backend CPU per request, bundling calls, {args.concurrency} at once (login's "
            f"Argon2 left out: {argon2_us:.0f} µs a call on the cheap test profile); floor: a "
            "do-nothing aiohttp handler / a one-row query on the same database driver, the mean "
            "of its runs before and after the bundling calls",
            f"{per_request_us:.0f} µs",
            f"{floor['empty_us']:.0f} / {floor['row_us']:.0f} µs ("
            + " and ".join(f"{us:.0f}" for us in floor["row_us_each"])
            + ")",
            "",
            "≤ 3× the one-row floor",
            f"{'yes' if ratio <= 3 else '**no**'} ({ratio:.1f}×)",
        )
    ]
    rows += [burst_row(r[k], k) for k in ("burst", "burst_real_time") if k in r]
    if "argon2" in r:
        rows += argon2_rows(r["argon2"])
    return rows


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    b, c, p, f, h = r["bundle"], r["classic"], r["paced"], r["floor"], r["held"]
    speedup = b["calls_per_s"] / c["calls_per_s"]
    # A short run's floor can spend less than one /proc clock tick (10 ms): no ratio then.
    floor_us = f["cpu_per_command_us"]
    cost_ratio = p["cpu_per_command_us"] / floor_us if floor_us else math.inf
    yes = {True: "yes", False: "**no**"}
    needed_cores = SPEEDUP_GOAL * c["calls_per_s"] * b["machine_per_call_ms"] / 1000
    backend_db_ms = b["backend_per_call_ms"] + b["database_per_call_ms"]
    requests = b["backend_requests_per_call"]
    rows: list[tuple[str, ...]] = [
        ("what", "FastAGI server", "floor (no work)", "classic AGI", "goal", "met"),
        ("---",) * 6,
        (
            f"completed calls/s, bundling, {args.concurrency} at once (classic: "
            f"{c['concurrency']}; {arrivals(args.ramp)})",
            f"{b['calls_per_s']:.1f}",
            "",
            f"{c['calls_per_s']:.2f} ("
            + " and ".join(f"{rate:.2f}" for rate in c["calls_per_s_each"])
            + ")",
            f"≥ {SPEEDUP_GOAL}× classic",
            f"{yes[speedup >= SPEEDUP_GOAL]} ({speedup:.1f}×)",
        ),
        (
            "failed calls",
            f"{b['failed']} of {b['calls']}",
            "",
            f"{c['failed']} of {c['calls']}",
            "0",
            yes[b["failed"] == 0 and h["failed"] == 0],
        ),
        (
            "CPU per bundling call (server process; classic: the call's process)",
            f"{b['cpu_per_call_ms']:.1f} ms",
            "",
            f"{c['cpu_per_call_ms']:.0f} ms",
            "",
            "",
        ),
        (
            "CPU per bundling call, whole machine: server + backend + database server + "
            "simulated Asterisk + the rest (kernel, other processes)",
            f"{b['machine_per_call_ms']:.0f} ms = {b['cpu_per_call_ms']:.0f} + "
            f"{b['backend_per_call_ms']:.0f} + {b['database_per_call_ms']:.0f} + "
            f"{b['simulator_per_call_ms']:.0f} + {b['rest_per_call_ms']:.0f} ms",
            "",
            "",
            "",
            "",
        ),
        (
            "backend + database server CPU per bundling call",
            f"{backend_db_ms:.1f} ms = {b['backend_per_call_ms']:.1f} + "
            f"{b['database_per_call_ms']:.1f} ms",
            "",
            "",
            "≤ 15 ms",
            f"{yes[backend_db_ms <= 15]}",
        ),
        (
            "backend requests per bundling call (answers the server's client received)",
            f"{requests:.2f}",
            "",
            "",
            "≤ 5",
            yes[requests <= 5],
        ),
        (
            f"the machine's {len(ALL_CPUS)} cores busy during the bundling calls",
            f"{b['machine_busy']:.0%}",
            "",
            "",
            "",
            f"{SPEEDUP_GOAL}× classic at this cost needs {needed_cores:.1f} cores",
        ),
        (
            "calls held at once at a menu (one process)",
            f"{h['held']} of {h['calls']}",
            "",
            "",
            "≥ 2,000",
            yes[h["held"] >= 2000],
        ),
        (
            "memory per held call (server RSS growth)",
            f"{h['kib_per_call']:.0f} KiB ({h['idle_mib']:.0f} → {h['held_mib']:.0f} MiB)",
            "",
            "",
            "",
            "",
        ),
        (
            f"a bundling call while {h['held']} are held",
            f"{h['probe_s']:.2f} s{'' if h['probe_ok'] else ' (failed)'}",
            "",
            "",
            "",
            "",
        ),
        (
            f"AGI round trip, p50 / p99, {p['calls']} calls paced at the menu "
            f"(~{args.pace_ms} ms per prompt; median of {args.rounds} rounds, the rounds' p99)",
            f"{ms(p['gap_p50'])} / {ms(p['gap_p99'])} ms ({p99s(p)})",
            f"{ms(f['gap_p50'])} / {ms(f['gap_p99'])} ms ({p99s(f)})",
            "",
            "p99 added ≤ 2 ms",
            yes[p["gap_p99"] - f["gap_p99"] <= 0.002]
            + f" ({ms(p['gap_p99'] - f['gap_p99'])} ms over the floor's p99; "
            f"{ms(p['gap_p99'] - f['gap_p50'])} over its p50)",
        ),
        (
            "the simulated Asterisk's CPU meanwhile (its own core)",
            f"{p['simulator_busy']:.0%}",
            f"{f['simulator_busy']:.0%}",
            "",
            "",
            "",
        ),
        (
            "server CPU per AGI command, paced calls",
            f"{p['cpu_per_command_us']:.0f} µs",
            f"{f['cpu_per_command_us']:.0f} µs",
            "",
            "≤ 1.5× floor",
            f"{yes[cost_ratio <= 1.5]} ({cost_ratio:.1f}×)",
        ),
        (
            "server CPU per AGI command, bundling calls",
            f"{b['cpu_per_command_us']:.0f} µs",
            "",
            "",
            "",
            "",
        ),
        (
            "AGI round trip with the backend in it, p50 / p99, bundling calls",
            f"{ms(b['gap_p50'])} / {ms(b['gap_p99'])} ms",
            "",
            "",
            "",
            "",
        ),
        (
            f"backend request latency p50 / p99 (the server's client), {args.concurrency} "
            "bundling calls at once",
            f"{b['backend_p50_ms']:.1f} / {b['backend_p99_ms']:.1f} ms (p99 by request: "
            + ", ".join(f"{r} {ms:.0f}" for r, ms in b["backend_p99_by_request"].items())
            + ")",
            "",
            "",
            "p99 ≤ 100 ms",
            yes[b["backend_p99_ms"] <= 100],
        ),
    ]
    rows += backend_rows(r, args)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_and_report(parser.parse_args(argv))


def database_name(args: argparse.Namespace) -> str:
    if args.postgres:
        return "PostgreSQL"
    return str(args.database_url).split(":", 1)[0] if args.database_url else "SQLite"


async def run_until_stopped(args: argparse.Namespace) -> dict[str, Any] | None:
    """`run`, or None when SIGTERM stops it: cancelled, every phase stops its processes (the
    backend, servers, PostgreSQL) on the way out instead of leaving them running."""
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        return await run(args)
    except asyncio.CancelledError:
        return None


def run_and_report(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    results = asyncio.run(run_until_stopped(args))
    if results is None:
        print("bench stopped (SIGTERM)", file=sys.stderr)
        return 1
    print(report(results, args))
    if failed := results["bundle"]["failed_endings"]:
        print("\nfailed bundling calls ended with:", dict(failed))
    print(
        f"\n(bench {time.perf_counter() - started:.0f} s on {os.cpu_count()} cores; "
        f"{results['bundle']['commands']} + {results['paced']['commands']} AGI commands; "
        f"backend processes: {args.backend_workers}; database: {database_name(args)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
