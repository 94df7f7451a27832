"""The real-Asterisk suite's stack, started once per session: Asterisk 22 (tests/asterisk/
instance.py), `ivrs backend` (its SMS to a file, outbox_backend.py), `ivrs agi` with AMI and a
second `ivrs agi` without AMI, as processes of their own on loopback. Each test opens its own
AMI connection (the `tester` user) and makes its own truckers in the backend's database.

Without the Asterisk source (scripts/build-asterisk.sh) every test here is skipped with the
script's one line, and the run's summary repeats it; a source that is there but not built is a
failure (`make test` builds it first)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from backend.database import Database, open_database
from backend.settings import BackendSettings
from harness.postgres import free_port
from prompts.build import build
from tests.asterisk.driver import Ami
from tests.asterisk.instance import REPO, TESTER, Asterisk, Ports, environment, installed_prefix
from tests.asterisk.stack import Process, Stack, start_process, wait_listening

HERE = Path(__file__).resolve().parent
PREFIX, WHY_NOT = installed_prefix()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.asterisk)
            if WHY_NOT.startswith("skip: "):
                item.add_marker(pytest.mark.skip(reason=WHY_NOT.removeprefix("skip: ")))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if WHY_NOT.startswith("skip: "):
        terminalreporter.write_line(WHY_NOT.removeprefix("skip: "))


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

        def start_agi(name: str, port: int, extra_env: dict[str, str]) -> Process:
            env = agi_env | {
                "IVRS_AGI_PORT": str(port),
                "IVRS_SPOOL_DIR": str(root / f"spool-{name}"),
            }
            process = start_process(
                name, [sys.executable, "-m", "cli.main", "agi"], env | extra_env, asterisk.logs
            )
            processes.append(process)
            return process

        agi = start_agi(
            "agi",
            ports.agi,
            {
                "IVRS_AMI_HOST": "127.0.0.1",
                "IVRS_AMI_PORT": str(ports.ami),
                "IVRS_AMI_USERNAME": "ivrs",
                "IVRS_AMI_SECRET": asterisk.ami_secret,
            },
        )
        agi_without_ami = start_agi("agi-without-ami", ports.agi_without_ami, {})
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
