"""`ivrs admin ...` as an administrator types it: every subcommand run through the real command
line (cli.main) on a fresh database, what it prints, and bad input refused with exit status 2
and one line that says why."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
import structlog
from cryptography.fernet import Fernet

from cli.logs import PROCESSORS
from cli.main import main

SEED_CSV = "serial,key,type,digits,period,expiry\nFTK9000001,{key},totp,6,60,2029-04-30\n"
RFC_KEY_HEX = b"12345678901234567890".hex()


@pytest.fixture
def ivrs_admin(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """ivrs_admin(*args, stdin="") -> (exit status, what it printed: standard output, then its
    own lines on standard error). Its structured logs go to `ivrs_admin.logs`: configured as
    `ivrs` does, they would hold on to this test's standard error after it is gone."""
    monkeypatch.setenv("IVRS_DATABASE_URL", database_url)
    monkeypatch.setenv("IVRS_ARGON2_PROFILE", "test")
    monkeypatch.setenv("IVRS_SECRET_KEY", Fernet.generate_key().decode())
    logs = io.StringIO()
    logger_factory = structlog.PrintLoggerFactory(file=logs)
    monkeypatch.setattr(
        "cli.main.configure_logging",
        lambda: structlog.configure(
            processors=[*PROCESSORS, structlog.processors.JSONRenderer()],
            logger_factory=logger_factory,
        ),
    )
    saved = structlog.get_config()

    def run(*args: str, stdin: str = "") -> tuple[int, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        status = main(["admin", *args])
        captured = capsys.readouterr()
        said = [line for line in captured.err.splitlines(True) if line.startswith("ivrs admin:")]
        return status, captured.out + "".join(said)

    run.logs = logs  # type: ignore[attr-defined]
    yield run
    structlog.configure(**saved)


def test_every_admin_command_does_its_work_and_says_so(ivrs_admin, tmp_path: Path) -> None:
    assert ivrs_admin("create-account", "12345678", "--password", "246810") == (
        0,
        "account 12345678 created\n",
    )
    status, out = ivrs_admin("add-token", "12345678", "--serial", "FTK9000000")
    seed = out.rsplit(" ", 1)[1].strip()
    assert status == 0 and out.startswith("token assigned to 12345678; seed (base32, shown once)")

    token = pyotp.TOTP(seed, interval=60)
    now = datetime.now(UTC)
    codes = token.at(now), token.at(now.timestamp() + 60)
    status, out = ivrs_admin("resync-token", "FTK9000000", *codes)
    assert status == 0 and re.fullmatch(r"token FTK9000000 resynchronised: [+-]\d+ steps .*\n", out)

    seeds = tmp_path / "seeds.csv"
    seeds.write_text(SEED_CSV.format(key=RFC_KEY_HEX))
    status, out = ivrs_admin("import-tokens", str(seeds))
    assert status == 0 and out.startswith("1 token(s) imported, unassigned: FTK9000001\n")
    assert ivrs_admin("create-account", "23456789", "--password", "135790")[0] == 0
    assert ivrs_admin("assign-token", "FTK9000001", "23456789") == (
        0,
        "token FTK9000001 assigned to 23456789\n",
    )
    assert ivrs_admin("revoke-token", "FTK9000001") == (0, "token FTK9000001 revoked\n")

    accounts = tmp_path / "accounts.csv"
    accounts.write_text(
        "number,password_hash_or_initial_password,token_serial,type,services\n"
        "34567890,112233,,trucker,road_bundling\n"
    )
    status, out = ivrs_admin("import-accounts", str(accounts))
    assert status == 0 and out.startswith("1 accounts imported")

    assert ivrs_admin("lock", "12345678") == (0, "account 12345678 locked\n")
    assert ivrs_admin("unlock", "12345678") == (0, "account 12345678 unlocked\n")
    assert ivrs_admin("reset-password", "12345678", "--password", "998877") == (
        0,
        "password of 12345678 reset\n",
    )
    assert ivrs_admin("release-caller", "91234567") == (0, "caller 91234567 not throttled\n")

    png = tmp_path / "qr.png"
    status, out = ivrs_admin("enrol-mobile-token", "12345678", "--png", str(png))
    assert status == 0 and "otpauth://totp/" in out and png.stat().st_mode & 0o777 == 0o600

    assert ivrs_admin(
        "create-supervisor",
        "mei",
        "--role",
        "auditor",
        "--password-stdin",
        stdin="long enough pw\n",
    ) == (0, "supervisor mei created (auditor)\n")

    assert ivrs_admin("add-vehicle", "ab1234") == (0, "vehicle AB1234 added\n")
    status, out = ivrs_admin("lodge-cargo", "--count", "2")
    ccrns = out.split()
    assert status == 0 and len(ccrns) == 2
    status, out = ivrs_admin("combine-batch", *ccrns)
    assert status == 0 and out.strip()

    logged = ivrs_admin.logs.getvalue()
    assert "token_assigned" in logged  # the commands did log
    for secret in (seed, *codes, RFC_KEY_HEX, "246810", "998877", "112233", "long enough pw"):
        assert secret not in logged


def test_bad_input_is_refused_in_one_line_that_says_why(ivrs_admin, tmp_path: Path) -> None:
    assert ivrs_admin("create-account", "123", "--password", "246810") == (
        2,
        "ivrs admin: an account number has 8 digits\n",
    )
    assert ivrs_admin("unlock", "87654321") == (2, "ivrs admin: no account 87654321\n")
    key, seeds = tmp_path / "key.txt", tmp_path / "seeds.xml"
    key.write_text("not hex\n")
    seeds.write_bytes(b"<KeyContainer/>")
    assert ivrs_admin("import-tokens", str(seeds), "--pskc-key-file", str(key)) == (
        2,
        f"ivrs admin: {key}: the pre-shared key must be hex\n",
    )
    png = tmp_path / "taken.png"
    png.write_bytes(b"")
    status, out = ivrs_admin("enrol-mobile-token", "87654321", "--png", str(png))
    assert (status, out) == (
        2,
        f"ivrs admin: {png} exists: the QR code holds a secret, give a new file name\n",
    )
    assert ivrs_admin("create-supervisor", "kit", "--role", "admin", "--password-stdin") == (
        2,
        "ivrs admin: no password on standard input\n",
    )
