"""The FastAGI server's settings (ivr/settings.py): a configuration mistake is refused with the
variable's name, and every `ivrs` command on them ends with one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.settings import IvrSettings


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IVRS_AGI_PORT", "45x", "IVRS_AGI_PORT: a whole number above 0, not '45x'"),
        ("IVRS_BREAKER_FAILURES", "0", "IVRS_BREAKER_FAILURES: a whole number above 0, not '0'"),
        ("IVRS_AGI_REPLY_TIMEOUT_S", "0", "IVRS_AGI_REPLY_TIMEOUT_S: a number of seconds, more"),
        ("IVRS_BACKEND_TIMEOUT", "nan", "IVRS_BACKEND_TIMEOUT: a number of seconds, more"),
        ("IVRS_SHUTDOWN_GRACE_S", "-1", "IVRS_SHUTDOWN_GRACE_S: a number of seconds, 0 or more"),
        ("IVRS_BREAKER_RESET_S", "soon", "IVRS_BREAKER_RESET_S: a number of seconds, more"),
    ],
)
def test_a_malformed_number_is_refused_by_its_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        IvrSettings.from_env({name: value})
    assert str(refused.value).startswith(message)


def test_numbers_are_read_and_a_grace_of_zero_is_allowed() -> None:
    settings = IvrSettings.from_env(
        {"IVRS_AGI_PORT": "4600", "IVRS_AGI_REPLY_TIMEOUT_S": "2.5", "IVRS_SHUTDOWN_GRACE_S": "0"}
    )
    assert (settings.agi_port, settings.agi_reply_timeout_s) == (4600, 2.5)
    assert settings.shutdown_grace_s == 0


@pytest.mark.parametrize("command", [["agi"], ["spool", "deliver"]])
def test_a_mistake_ends_the_command_with_one_line(tmp_path: Path, command: list[str]) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IVRS_")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ivrs")), *command],
        cwd=tmp_path,
        env=environ | {"IVRS_AGI_REPLY_TIMEOUT_S": "five"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"ivrs {command[0]}: IVRS_AGI_REPLY_TIMEOUT_S: a number of seconds, more than 0, not 'five'"
    ]
