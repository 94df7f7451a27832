"""The real-Asterisk suite's stack, started once per session: Asterisk 22 (tests/asterisk/
instance.py), `ivrs backend` (its SMS to a file, outbox_backend.py), `ivrs agi` with AMI and a
second `ivrs agi` without AMI, as processes of their own on loopback. Each test opens its own
AMI connection (the `tester` user) and makes its own truckers in the backend's database.

Without the Asterisk source (scripts/build-asterisk.sh) every test here is skipped with the
script's one line, and the run's summary repeats it; a source that is there but not built is a
failure (`make test` builds it first)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyotp
import pytest
from cryptography.fernet import Fernet

from backend import admin
from backend.database import Database, open_database
from backend.settings import BackendSettings
from formats import keypad_keys
from prompts.build import build
from tests.asterisk.driver import Ami
from tests.asterisk.instance import REPO, TESTER, Asterisk, Ports, environment, installed_prefix
from tests.postgres import free_port

HERE = Path(__file__).resolve().parent
PREFIX, WHY_NOT = installed_prefix()
READY_TIMEOUT_S = 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.asterisk)
            if WHY_NOT.startswith("skip: "):
                item.add_marker(pytest.mark.skip(reason=WHY_NOT.removeprefix("skip: ")))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if WHY_NOT.startswith("skip: "):
        terminalreporter.write_line(WHY_NOT.removeprefix("skip: "))


# --- processes --------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines of an `ivrs` process."""
        out = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_process(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Process:
    log = logs / f"{name}.log"
    popen = subprocess.Popen(
        argv,
        cwd=logs,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Process(name, popen, log)


def wait_listening(process: Process, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} ended: {process.lines()[-20:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} not listening on {port} in {READY_TIMEOUT_S} s")


@dataclass
class Stack:
    asterisk: Asterisk
    backend: Process
    agi: Process
    agi_without_ami: Process
    settings: BackendSettings  # the backend process's, for the test's own database access
    sms_outbox: Path

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.asterisk.ports.backend}"

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.backend_url + path, headers={"Authorization": f"Bearer {self.settings.api_token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def sms(self) -> list[dict[str, str]]:
        if not self.sms_outbox.exists():
            return []
        return [json.loads(line) for line in self.sms_outbox.read_text().splitlines()]


@pytest.fixture(scope="session")
def prefix() -> Path:
    if PREFIX is None:
        pytest.fail(WHY_NOT, pytrace=False)
    return PREFIX


@pytest.fixture(scope="session")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prompts in English, offline (espeak-ng): what the tests' callers choose; the
    language menu and the fallback's zh_HK files fall back to en as Asterisk does."""
    out = tmp_path_factory.mktemp("sounds")
    report = build("espeak", ["en"], out)
    assert report.ok, report.summary()
    return out


@pytest.fixture(scope="package")  # stopped once the suite is done, not at the session's end
def stack(prefix: Path, sounds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("asterisk")
    ports = Ports(
        ami=free_port(), agi=free_port(), agi_without_ami=free_port(), backend=free_port()
    )
    token = "svc-" + secrets.token_hex(20)
    backend_url = f"http://127.0.0.1:{ports.backend}"
    spool = root / "spool-classic"
    asterisk = Asterisk(prefix, root, ports, environment(token, backend_url, spool))
    asterisk.configure(sounds, Path(sys.executable).with_name("ivrs-agi"))
    settings = BackendSettings(
        database_url=f"sqlite+aiosqlite:///{root / 'ivrs.db'}",
        api_token=token,
        argon2_profile="test",
        secret_key=Fernet.generate_key(),
        recordings_dir=asterisk.recordings,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("IVRS_")}
    base |= {"PYTHONUNBUFFERED": "1", "IVRS_LOG_FORMAT": "json", "PYTHONPATH": str(REPO)}
    outbox = root / "sms.jsonl"
    processes: list[Process] = []
    try:
        backend = start_process(
            "backend",
            [sys.executable, "-m", "tests.asterisk.outbox_backend", "--port", str(ports.backend)],
            base
            | {
                "IVRS_DATABASE_URL": settings.database_url,
                "IVRS_API_TOKEN": token,
                "IVRS_SECRET_KEY": settings.secret_key.decode(),
                "IVRS_ARGON2_PROFILE": "test",
                "IVRS_RECORDINGS_DIR": str(asterisk.recordings),
                "IVRS_TEST_SMS_OUTBOX": str(outbox),
            },
            asterisk.logs,
        )
        processes.append(backend)
        agi_env = base | {
            "IVRS_AGI_HOST": "127.0.0.1",
            "IVRS_BACKEND_URL": backend_url,
            "IVRS_API_TOKEN": token,
        }
        agi = start_process(
            "agi",
            [sys.executable, "-m", "cli.main", "agi"],
            agi_env
            | {
                "IVRS_AGI_PORT": str(ports.agi),
                "IVRS_SPOOL_DIR": str(root / "spool-agi"),
                "IVRS_AMI_HOST": "127.0.0.1",
                "IVRS_AMI_PORT": str(ports.ami),
                "IVRS_AMI_USERNAME": "ivrs",
                "IVRS_AMI_SECRET": asterisk.ami_secret,
            },
            asterisk.logs,
        )
        processes.append(agi)
        agi_without_ami = start_process(
            "agi-without-ami",
            [sys.executable, "-m", "cli.main", "agi"],
            agi_env
            | {
                "IVRS_AGI_PORT": str(ports.agi_without_ami),
                "IVRS_SPOOL_DIR": str(root / "spool-agi-without-ami"),
            },
            asterisk.logs,
        )
        processes.append(agi_without_ami)
        asterisk.start()
        for process, port in (
            (backend, ports.backend),
            (agi, ports.agi),
            (agi_without_ami, ports.agi_without_ami),
        ):
            wait_listening(process, port)
        yield Stack(asterisk, backend, agi, agi_without_ami, settings, outbox)
    finally:
        asterisk.stop()
        for process in processes:
            process.stop()


@pytest.fixture
async def ami(stack: Stack) -> AsyncIterator[Ami]:
    connection = Ami()
    await connection.connect(stack.asterisk.ports.ami, TESTER, stack.asterisk.tester_secret)
    yield connection
    await connection.close()


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[Database]:
    async with open_database(stack.settings) as database:
        yield database


# --- truckers on the real clock ----------------------------------------------------------------


@dataclass
class Trucker:
    account: str
    password: str
    seed: str
    ccrns: list[str]
    vehicle: str = "AB1234"

    def code(self) -> str:
        """The code the token shows now (the backend process runs on the real clock)."""
        return pyotp.TOTP(self.seed, digits=6, interval=60).now()

    def wrong_code(self) -> str:
        return f"{(int(self.code()) + 500_000) % 1_000_000:06d}"

    @property
    def letter_keys(self) -> str:
        return "".join(keypad_keys(c) for c in self.vehicle if c.isalpha()) + "#"

    @property
    def number_keys(self) -> str:
        return "".join(c for c in self.vehicle if c.isdigit()) + "#"


async def make_trucker(db: Database, cargo: int = 1, **account: Any) -> Trucker:
    number = str(secrets.randbelow(90_000_000) + 10_000_000)
    password = f"{secrets.randbelow(900_000) + 100_000}"
    await admin.create_account(db, number, password, **account)
    seed = await admin.add_token(
        db, number, kind="hardware", digits=6, period=60, expires_on=date(2029, 4, 30)
    )
    ccrns = [await admin.lodge_cargo(db) for _ in range(cargo)]
    return Trucker(number, password, seed, ccrns)
