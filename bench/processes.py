"""The benchmark's servers, each a process of its own (the backend, the FastAGI server, the floor),
so the simulator, the server under test and the backend do not share one event loop, and each
one's CPU time and memory can be read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60


@dataclass
class ServerProcess:
    """A child process that serves on a port it announces in its output.

    Its output goes to a file, not a pipe: the benchmark's event loop, busy simulating a burst of
    calls, read a pipe late, and a server writing a log line to a full pipe stopped its whole
    event loop until it was read (a tenth of the FastAGI server's time in a burst of 1,000). A
    server's log consumer in production (journald, a container runtime) reads at once."""

    name: str
    process: asyncio.subprocess.Process
    output: Path
    port: int = 0

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        port_from: Callable[[str], int | None],
        cwd: Path | None = None,
    ) -> ServerProcess:
        """Start `argv` (in `cwd`: another tree's code); `port_from` reads the port from an
        output line (None: not yet)."""
        output = Path(_output_dir().name) / f"{name.replace(' ', '-')}-{next(_numbers)}.log"
        with output.open("wb") as out:  # the child has its own descriptors of it
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=out,
                stderr=out,
                cwd=cwd,
            )
        server = cls(name, process, output)
        try:
            server.port = await asyncio.wait_for(server._announced(port_from), READY_TIMEOUT_S)
        except BaseException:
            await server.stop()
            raise
        return server

    async def _announced(self, port_from: Callable[[str], int | None]) -> int:
        while True:
            lines = self._lines()
            for line in lines:
                if (port := port_from(line)) is not None:
                    return port
            if self.process.returncode is not None:
                last = "\n".join(lines[-20:])
                raise RuntimeError(f"{self.name} ended before it was ready:\n{last}")
            await asyncio.sleep(0.05)

    def _lines(self) -> list[str]:
        return self.output.read_text(errors="replace").splitlines()

    @property
    def log(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far."""
        logged = []
        for line in self._lines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    logged.append(json.loads(line))
        return logged

    def pin(self, cpus: set[int]) -> None:
        """Run only on these CPUs (the server under test gets a core of its own)."""
        os.sched_setaffinity(self.process.pid, cpus)

    def cpu_s(self) -> float:
        """User and system CPU time used so far, its worker processes' included (`ivrs backend
        --workers`): those running, and those it has waited for."""
        return tree_cpu_s(self.process.pid)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def logged(self, event: str) -> dict[str, Any]:
        """Its last log line for `event` ({} if none)."""
        return next((e for e in reversed(self.log) if e.get("event") == event), {})

    async def stop(self) -> None:
        """SIGTERM (a graceful stop), then wait for it (its output stays readable)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


_numbers = itertools.count()


@functools.cache
def _output_dir() -> tempfile.TemporaryDirectory[str]:
    """Where the servers' output files are, removed when the benchmark's process ends."""
    return tempfile.TemporaryDirectory(prefix="ivrs-bench-output-")


def children(pid: int) -> list[int]:
    """`pid`'s child processes now ([] if it has ended)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except (OSError, ValueError):
        return []


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and its descendants so far (see cpu_ticks)."""
    return cpu_ticks(pid, with_children=True) / CLOCK_TICKS


def cpu_ticks(pid: int, with_children: bool = False) -> int:
    """User and system CPU of `pid` in clock ticks; with_children: its descendants' too, those
    running and those it has waited for (0 if it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    if not with_children:
        return ticks
    waited_for = int(fields[13]) + int(fields[14])
    return ticks + waited_for + sum(cpu_ticks(child, True) for child in children(pid))


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def json_port(event: str) -> Callable[[str], int | None]:
    """The port in a JSON log line of `event` (as `ivrs agi` logs agi_listening)."""

    def port(line: str) -> int | None:
        if f'"{event}"' not in line:
            return None
        return int(json.loads(line)["port"])

    return port


def port_after(prefix: str) -> Callable[[str], int | None]:
    """The port in a line like `<prefix>http://127.0.0.1:8080` or `<prefix>8080`."""

    def port(line: str) -> int | None:
        if prefix not in line:
            return None
        rest = line.split(prefix, 1)[1].strip()
        return int(rest.rsplit(":", 1)[-1].split()[0].strip("/= "))

    return port
