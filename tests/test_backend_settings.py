"""Backend settings from the environment, and the seed key file made on first start."""

from __future__ import annotations

import stat
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
    with pytest.raises(FileNotFoundError):
        BackendSettings.from_env({"IVRS_SECRET_KEY_FILE": str(tmp_path / "missing.key")})


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
