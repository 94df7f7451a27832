"""A throwaway PostgreSQL server, for the tests (tests/support/databases.py) and the benchmarks.

The server is the Debian `postgresql` package's (debian-packages.txt), started once per test
session and only when a test asks for PostgreSQL: a fresh data directory in a temporary
directory, a free port on 127.0.0.1 only (its unix socket in that directory too), durability
off (fsync, synchronous_commit, full_page_writes: the data is thrown away). PostgreSQL refuses
to run as root, and CI runs as root: then `initdb` and `pg_ctl` run as the `postgres` user, in a
directory that user owns.

The backend connects as an ordinary role (`ivrs`, a random password, over TCP, as in
production). A template database is migrated once (backend/migrations, to the head revision);
each test gets a copy of its own (CREATE DATABASE ... TEMPLATE), dropped after the test, so
tests stay independent. Copies are made one test ahead, and dropped, on a thread of their own
(the superuser over the unix socket), so a test does not wait for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from backend.database import make_engine, upgrade_schema

SERVER_USER = "postgres"  # who runs the server when the tests run as root
SUPERUSER = "postgres"  # the server's bootstrap role (initdb -U)
APP_ROLE = "ivrs"  # the backend's role: owns its databases, no other rights
TEMPLATE = "ivrs_template"  # migrated to the head revision once per session
EMPTY = "template0"  # for tests of the migrations themselves
START_TIMEOUT = 60  # seconds
PORT_ATTEMPTS = 5  # a free port can be taken by someone else before the server binds it
SETTINGS = """
# harness/postgres.py: a throwaway server for the tests and benchmarks.
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
log_min_messages = warning
log_min_error_statement = panic
"""
# Stops the server and removes its directory once the test process is gone, however it ended
# (a CI timeout's SIGKILL runs no fixture finalizer).
WATCHDOG = """
while [ -e /proc/{pid} ]; do sleep 1; done
{pg_ctl} stop --pgdata={data_dir} --mode=immediate --wait >/dev/null 2>&1
rm -rf {root}
"""
NOT_INSTALLED = (
    "PostgreSQL is not installed: the backend tests run on PostgreSQL too, and start a server "
    "of their own with its initdb and pg_ctl (looked for with `pg_config --bindir` and in "
    "/usr/lib/postgresql/*/bin). Install the Debian package `postgresql` (listed in "
    "debian-packages.txt: `make install` adds it)."
)

T = TypeVar("T")


class PostgresUnavailable(RuntimeError):
    """The server cannot be started here; the message says why and what to do."""


def find_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: pg_config's, else Debian's newest."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(Path(done.stdout.strip()))

    def major(bindir: Path) -> int:
        version = bindir.parent.name
        return int(version) if version.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server in a temporary directory: `start()`, then `stop()` (which removes it all)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ivrs-pg-"))
        self.port = 0
        self.password = secrets.token_hex(16)
        self._as_user: list[str] = []
        # The superuser's connection lives on a thread and loop of its own: tests each have an
        # event loop, the server outlives them all.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._admin: asyncpg.Connection | None = None
        self._admin_lock = asyncio.Lock()  # one statement at a time on that connection
        self._next: Future[str] | None = None  # the next test's database, being made
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{APP_ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    # --- the server -------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._own_root()
            self._run(
                "initdb",
                f"--pgdata={self.data_dir}",
                f"--username={SUPERUSER}",
                "--auth=trust",  # the unix socket only: pg_hba's host lines are replaced below
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(SETTINGS.format(socket_dir=self.socket_dir))
            # The socket directory is the server user's, 0700: only it (and root) can use the
            # trusted socket; over TCP, every role needs its password.
            (self.data_dir / "pg_hba.conf").write_text(
                f"local all {SUPERUSER} trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
            )
            self._start_on_a_free_port()
            self._start_watchdog()
            self._thread.start()
            self._call(self._prepare())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._finish(), timeout=40)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if self.port and (self.data_dir / "postmaster.pid").exists():
            # immediate: no shutdown checkpoint, the data is thrown away anyway
            stop = ["stop", f"--pgdata={self.data_dir}", "--mode=immediate", "--wait"]
            self._run("pg_ctl", *stop, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._watchdog is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._watchdog.pid, signal.SIGKILL)  # its own session: runuser, sh
            self._watchdog.wait()

    def _start_watchdog(self) -> None:
        script = WATCHDOG.format(
            pid=os.getpid(),
            pg_ctl=shlex.quote(str(self.bindir / "pg_ctl")),
            data_dir=shlex.quote(str(self.data_dir)),
            root=shlex.quote(str(self.root)),
        )
        self._watchdog = subprocess.Popen(
            [*self._as_user, "sh", "-c", script],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the tests does not stop it first
        )

    def _own_root(self) -> None:
        """As root, the server runs as `postgres`, in a directory that user owns."""
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"The tests run as root, and there is no `{SERVER_USER}` user to run PostgreSQL "
                "as (it refuses to run as root): the Debian package `postgresql` creates it."
            ) from None
        if not shutil.which("runuser"):
            raise PostgresUnavailable("The tests run as root: starting PostgreSQL needs runuser.")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)
        self._as_user = ["runuser", "-u", SERVER_USER, "--"]

    def _start_on_a_free_port(self) -> None:
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            start = ["start", f"--pgdata={self.data_dir}", f"--log={self.log_file}", "--wait"]
            start += [f"--timeout={START_TIMEOUT}", f"--options=-p {self.port}"]
            started = self._run("pg_ctl", *start, check=False)
            if started.returncode == 0:
                return
            if "could not bind" not in self._log_tail():
                break  # not a port taken under our feet: another try would not help
        self.port = 0
        raise PostgresUnavailable(f"The PostgreSQL server did not start:\n{self._log_tail()}")

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [*self._as_user, str(self.bindir / program), *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=START_TIMEOUT + 30, cwd=self.root
        )
        if check and done.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # --- databases --------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _execute(self, sql: str) -> None:
        async with self._admin_lock:
            if self._admin is None or self._admin.is_closed():
                self._admin = await asyncpg.connect(
                    host=str(self.socket_dir), port=self.port, user=SUPERUSER, database="postgres"
                )
            await self._admin.execute(sql)

    async def _finish(self) -> None:
        """The last tests' drops (and the unused next database) done, the connection closed."""
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=30)
        if self._admin is not None:
            await self._admin.close()

    async def _prepare(self) -> None:
        """The backend's role, and the template database migrated to the head revision."""
        await self._execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.password}'")
        await self._execute(f"CREATE DATABASE {TEMPLATE} OWNER {APP_ROLE}")
        engine = make_engine(self.url(TEMPLATE))
        try:
            await upgrade_schema(engine)
        finally:
            await engine.dispose()  # a template is copied only while nobody is connected

    async def _create(self, template: str) -> str:
        name = f"test_{secrets.token_hex(6)}"
        await self._execute(f"CREATE DATABASE {name} OWNER {APP_ROLE} TEMPLATE {template}")
        return name

    async def _drop(self, name: str) -> None:
        await self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextlib.asynccontextmanager
    async def database(self, template: str = TEMPLATE) -> AsyncIterator[str]:
        """A new database for the block: a copy of the migrated template, or of `EMPTY`.
        Dropped afterwards, connections left open or not."""
        if template == TEMPLATE:
            made = self._next or self._submit(self._create(TEMPLATE))
            self._next = self._submit(self._create(TEMPLATE))  # for the next test
        else:
            made = self._submit(self._create(template))
        name = await asyncio.wrap_future(made)
        try:
            yield self.url(name)
        finally:
            self._submit(self._drop(name))


def start_postgres() -> PostgresServer:
    """A running server, or PostgresUnavailable saying why not."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(NOT_INSTALLED)
    server = PostgresServer(bindir)
    server.start()
    return server
