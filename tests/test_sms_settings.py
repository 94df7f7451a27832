"""`IVRS_SMS_SENDER` and its settings (backend/sms/config.py): each sender configured from the
environment, credentials from a variable or a file and never in a repr; a missing or wrong
setting stops `ivrs backend` at start with one line. The `file` sender lets a test in another
process read the code a real backend sent."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from backend.settings import BackendSettings
from backend.sms import FileSender, MemorySender, sender_for
from backend.sms.config import FileConfig, TwilioConfig, WebhookConfig
from backend.sms.http import TwilioSender, WebhookSender
from tests.support.backend_process import KEY, ROOT, backend_env, free_port, ivrs, post_when_up

SID = "AC" + "0123456789abcdef" * 2
SERVICE = "MG" + "fedcba9876543210" * 2
TOKEN = "secret-auth-token-4242"


def settings(**env: str) -> BackendSettings:
    return BackendSettings.from_env({"IVRS_SECRET_KEY": KEY, **env})


def test_twilio_is_configured_from_the_environment_or_a_token_file(tmp_path: Path) -> None:
    chosen = settings(
        IVRS_SMS_SENDER="twilio", IVRS_TWILIO_ACCOUNT_SID=SID, IVRS_TWILIO_AUTH_TOKEN=TOKEN,
        IVRS_TWILIO_FROM="+85230001234",
    )  # fmt: skip
    assert chosen.sms_gateway == TwilioConfig(SID, TOKEN, from_number="+85230001234")
    assert isinstance(sender_for(chosen.sms_sender, chosen.sms_gateway), TwilioSender)
    token_file = tmp_path / "twilio-token"
    token_file.write_text(TOKEN + "\n")
    from_file = settings(
        IVRS_SMS_SENDER="twilio", IVRS_TWILIO_ACCOUNT_SID=SID,
        IVRS_TWILIO_AUTH_TOKEN_FILE=str(token_file), IVRS_TWILIO_MESSAGING_SERVICE_SID=SERVICE,
        IVRS_TWILIO_API_URL="http://127.0.0.1:9",
    )  # fmt: skip
    gateway = from_file.sms_gateway
    assert isinstance(gateway, TwilioConfig)
    assert (gateway.auth_token, gateway.messaging_service_sid, gateway.from_number) == (
        TOKEN,
        SERVICE,
        None,
    )
    assert TOKEN not in repr(from_file) + repr(gateway)


def test_the_webhook_and_the_file_sender_are_configured_from_the_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("hook-token")
    hook = settings(
        IVRS_SMS_SENDER="webhook", IVRS_SMS_WEBHOOK_URL="https://sms.example.org/send",
        IVRS_SMS_WEBHOOK_TOKEN_FILE=str(tmp_path / "token"),
    )  # fmt: skip
    assert hook.sms_gateway == WebhookConfig("https://sms.example.org/send", "hook-token")
    assert isinstance(sender_for(hook.sms_sender, hook.sms_gateway), WebhookSender)
    assert "hook-token" not in repr(hook)
    file = settings(IVRS_SMS_SENDER="file", IVRS_SMS_FILE=str(tmp_path / "sms.jsonl"))
    assert file.sms_gateway == FileConfig(tmp_path / "sms.jsonl")
    assert isinstance(sender_for(file.sms_sender, file.sms_gateway), FileSender)
    assert isinstance(sender_for("memory"), MemorySender)
    assert settings(IVRS_SMS_SEND_SECONDS="2.5").sms_send_seconds == 2.5


TWILIO = {"IVRS_SMS_SENDER": "twilio", "IVRS_TWILIO_ACCOUNT_SID": SID}
FROM = {"IVRS_TWILIO_FROM": "+85230001234"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IVRS_SMS_SENDER": "pigeon"}, "IVRS_SMS_SENDER must be one of"),
        ({"IVRS_SMS_SENDER": "twilio"}, "needs IVRS_TWILIO_ACCOUNT_SID"),
        ({**TWILIO, "IVRS_TWILIO_ACCOUNT_SID": "AC123"}, "needs IVRS_TWILIO_ACCOUNT_SID"),
        ({**TWILIO, "IVRS_TWILIO_AUTH_TOKEN": TOKEN}, "one of IVRS_TWILIO_FROM"),
        (
            {**TWILIO, **FROM, "IVRS_TWILIO_MESSAGING_SERVICE_SID": SERVICE},
            "one of IVRS_TWILIO_FROM",
        ),
        ({**TWILIO, "IVRS_TWILIO_FROM": "3000 1234 5678"}, "IVRS_TWILIO_FROM: a number"),
        ({**TWILIO, "IVRS_TWILIO_FROM": "+85230001234"}, "IVRS_TWILIO_AUTH_TOKEN"),
        (
            {**TWILIO, **FROM, "IVRS_TWILIO_AUTH_TOKEN_FILE": "/nonexistent/t"},
            "IVRS_TWILIO_AUTH_TOKEN_FILE: cannot read /nonexistent/t",
        ),
        (
            {**TWILIO, "IVRS_TWILIO_FROM": "+85230001234", "IVRS_TWILIO_AUTH_TOKEN": TOKEN,
             "IVRS_TWILIO_API_URL": "http://api.twilio.com"},
            "IVRS_TWILIO_API_URL: use https://",
        ),
        ({"IVRS_SMS_SENDER": "webhook"}, "IVRS_SMS_WEBHOOK_URL is not set"),
        (
            {"IVRS_SMS_SENDER": "webhook", "IVRS_SMS_WEBHOOK_URL": "https://h.example/x",
             "IVRS_SMS_WEBHOOK_TOKEN": "a", "IVRS_SMS_WEBHOOK_TOKEN_FILE": "/etc/hostname"},
            "not both",
        ),
        ({"IVRS_SMS_SENDER": "file"}, "needs IVRS_SMS_FILE"),
        ({"IVRS_SMS_SEND_SECONDS": "5"}, "IVRS_SMS_SEND_SECONDS must be above 0 and at most 3"),
        ({"IVRS_SMS_SEND_SECONDS": "soon"}, "IVRS_SMS_SEND_SECONDS: a number"),
    ],
)  # fmt: skip
def test_a_missing_or_wrong_setting_is_refused_with_the_remedy(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        settings(**env)


def test_a_sender_named_without_its_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="IVRS_SMS_SENDER=twilio is not configured"):
        BackendSettings(secret_key=KEY.encode(), sms_sender="twilio")


def test_ivrs_backend_stops_at_start_with_one_line(tmp_path: Path) -> None:
    env = backend_env(
        tmp_path,
        IVRS_SMS_SENDER="twilio",
        IVRS_TWILIO_ACCOUNT_SID=SID,
        IVRS_TWILIO_FROM="+85230001234",
        IVRS_TWILIO_AUTH_TOKEN=TOKEN,
        IVRS_TWILIO_API_URL="http://sms.example.org",
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "backend", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "ivrs backend: IVRS_TWILIO_API_URL: use https:// (plain http only to 127.0.0.1, for tests)"
    ]
    assert TOKEN not in done.stderr


async def test_the_file_sender_lets_another_process_read_the_code(tmp_path: Path) -> None:
    """`ivrs backend` with IVRS_SMS_SENDER=file, as a real-Asterisk test would run it."""
    outbox_file, port = tmp_path / "sms.jsonl", free_port()
    env = backend_env(
        tmp_path, IVRS_SMS_SENDER="file", IVRS_SMS_FILE=str(outbox_file), IVRS_API_TOKEN="t0k"
    )
    # The account first: no two writers on the SQLite file.
    admin = await ivrs(env, "admin", "create-account", "12345678", "--password", "246810",
                       "--needs-activation")  # fmt: skip
    _, err = await admin.communicate()
    assert admin.returncode == 0, err
    backend = await ivrs(env, "backend", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}/v1/accounts/12345678/mobile"
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0k"}) as http:
            reply = await post_when_up(http, url, {"mobile": "91234567", "call_id": None})
        assert reply == 202
        code = FileSender(outbox_file).last_code("91234567")
        assert code is not None and len(code) == 6
        assert oct(outbox_file.stat().st_mode & 0o777) == "0o600"
    finally:
        backend.terminate()
        _, err = await asyncio.wait_for(backend.communicate(), 30)
    assert code.encode() not in err  # nor in the backend's log
