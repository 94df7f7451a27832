"""The real-Asterisk suite's processes and truckers (used by conftest.py's fixtures and the
tests): `Stack`, what a test reaches of the running Asterisk, backend and FastAGI servers, and
`make_trucker`, an account with a token on the real clock."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyotp

from backend import admin
from backend.database import Database
from backend.settings import BackendSettings
from formats import keypad_keys
from tests.asterisk.instance import Asterisk

READY_TIMEOUT_S = 60


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
