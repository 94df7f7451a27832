"""Backend settings from the environment, and the seed key file made on first start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from backend.settings import BackendSettings


def test_defaults_suit_a_local_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = BackendSettings.from_env({})
    assert settings.database_url == "sqlite+aiosqlite:///var/ivrs.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.api_token == "ivrs-dev-token"
    assert settings.argon2_profile == "rfc9106"
    assert settings.recordings_dir == Path("var/recordings")
    assert (settings.workers, settings.database_connections) == (1, 5)
    assert settings.clock().tzinfo is not None


def test_missing_key_is_generated_once_readable_only_by_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = BackendSettings.from_env({})
    key_file = tmp_path / "var" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert BackendSettings.from_env({}).secret_key == first.secret_key
    Fernet(first.secret_key)


def test_key_comes_from_the_environment_or_a_named_file(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    key_file = tmp_path / "seed.key"
    key_file.write_bytes(key + b"\n")
    assert BackendSettings.from_env({"IVRS_SECRET_KEY": key.decode()}).secret_key == key
    assert BackendSettings.from_env({"IVRS_SECRET_KEY_FILE": str(key_file)}).secret_key == key


def test_a_named_key_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IVRS_SECRET_KEY_FILE=.*missing.key: no such file"):
        BackendSettings.from_env({"IVRS_SECRET_KEY_FILE": str(tmp_path / "missing.key")})


def ivrs(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The `ivrs` console script in a directory of its own (its SQLite database and key)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IVRS_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("ivrs")), *args],
        cwd=tmp_path,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["backend", "--port", "0"], ["admin", "lodge-cargo"]])
def test_a_missing_key_file_ends_the_command_with_one_line_and_the_remedy(
    tmp_path: Path, command: list[str]
) -> None:
    result = ivrs(tmp_path, *command, IVRS_SECRET_KEY_FILE=str(tmp_path / "gone.key"))
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"ivrs {command[0]}: IVRS_SECRET_KEY_FILE={tmp_path / 'gone.key'}: no such file or "
        "directory; restore the key file that encrypted the token seeds, or correct "
        "IVRS_SECRET_KEY_FILE"
    ]


def test_admin_prints_its_result_and_no_alembic_lines(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    result = ivrs(tmp_path, "admin", "lodge-cargo", IVRS_SECRET_KEY=key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit()  # the CCRN lodged
    assert "alembic" not in result.stderr.lower() and "INFO" not in result.stderr


def test_a_malformed_key_is_refused() -> None:
    with pytest.raises(ValueError, match="Fernet"):
        BackendSettings.from_env({"IVRS_SECRET_KEY": "not-a-key"})


def test_secrets_stay_out_of_the_repr() -> None:
    key = Fernet.generate_key()
    settings = BackendSettings.from_env({"IVRS_SECRET_KEY": key.decode()})
    assert key.decode() not in repr(settings) and "ivrs-dev-token" not in repr(settings)


def test_host_and_port_come_from_the_backend_url_unless_given() -> None:
    key = Fernet.generate_key().decode()
    from_url = BackendSettings.from_env(
        {"IVRS_SECRET_KEY": key, "IVRS_BACKEND_URL": "http://0.0.0.0:9090"}
    )
    assert (from_url.host, from_url.port) == ("0.0.0.0", 9090)
    explicit = BackendSettings.from_env(
        {
            "IVRS_SECRET_KEY": key,
            "IVRS_BACKEND_URL": "http://0.0.0.0:9090",
            "IVRS_BACKEND_PORT": "8181",
        }
    )
    assert (explicit.host, explicit.port) == ("0.0.0.0", 8181)


def test_unknown_argon2_profile_is_refused() -> None:
    key = Fernet.generate_key().decode()
    with pytest.raises(ValueError, match="IVRS_ARGON2_PROFILE"):
        BackendSettings.from_env({"IVRS_SECRET_KEY": key, "IVRS_ARGON2_PROFILE": "fast"})


def test_terms_version_and_sms_sender_have_defaults_and_can_be_set() -> None:
    key = Fernet.generate_key().decode()
    defaults = BackendSettings.from_env({"IVRS_SECRET_KEY": key})
    assert (defaults.terms_version, defaults.sms_sender) == ("2026-11", "log")
    assert (defaults.suspended_from, defaults.suspended_until) == (None, None)
    chosen = BackendSettings.from_env(
        {"IVRS_SECRET_KEY": key, "IVRS_TERMS_VERSION": "2027-01", "IVRS_SMS_SENDER": "memory"}
    )
    assert (chosen.terms_version, chosen.sms_sender) == ("2027-01", "memory")


def test_unknown_sms_sender_is_refused() -> None:
    key = Fernet.generate_key().decode()
    with pytest.raises(ValueError, match="IVRS_SMS_SENDER"):
        BackendSettings.from_env({"IVRS_SECRET_KEY": key, "IVRS_SMS_SENDER": "carrier-pigeon"})


def test_a_suspension_window_is_read_with_its_offset() -> None:
    key = Fernet.generate_key().decode()
    settings = BackendSettings.from_env(
        {
            "IVRS_SECRET_KEY": key,
            "IVRS_SUSPENDED_FROM": "2026-12-01T00:00:00+08:00",
            "IVRS_SUSPENDED_UNTIL": "2026-12-01T06:00:00+08:00",
        }
    )
    start = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert settings.suspended_from == start
    assert settings.suspended_until == start + timedelta(hours=6)
    assert not settings.suspended(start - timedelta(seconds=1))
    assert settings.suspended(start)
    assert not settings.suspended(start + timedelta(hours=6))


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"IVRS_SUSPENDED_FROM": "2026-12-01T00:00:00"}, "offset"),
        ({"IVRS_SUSPENDED_FROM": "tomorrow"}, "ISO 8601"),
        ({"IVRS_SUSPENDED_FROM": "2026-12-01T00:00:00+08:00"}, "go together"),
        (
            {
                "IVRS_SUSPENDED_FROM": "2026-12-01T06:00:00+08:00",
                "IVRS_SUSPENDED_UNTIL": "2026-12-01T00:00:00+08:00",
            },
            "before",
        ),
    ],
)
def test_a_malformed_suspension_window_is_refused(window: dict[str, str], message: str) -> None:
    key = Fernet.generate_key().decode()
    with pytest.raises(ValueError, match=message):
        BackendSettings.from_env({"IVRS_SECRET_KEY": key, **window})
