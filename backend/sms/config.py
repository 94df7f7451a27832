"""Which sender delivers SMS (`IVRS_SMS_SENDER`) and its settings, read from the environment
(docs/operations.md, "SMS"). Credentials come from a variable or from the file another variable
names (`..._FILE`); they are kept out of reprs and never logged. A missing or wrong setting is a
ValueError of one line naming the variable and the remedy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from yarl import URL

from backend.sms.http import TwilioSender, WebhookSender
from backend.sms.senders import FileSender, LogSender, MemorySender, SmsSender

log = structlog.get_logger("backend.sms")

SMS_SENDERS = ("log", "memory", "file", "twilio", "webhook")
# The whole time one message may take, retries included: the caller hears nothing meanwhile
# (docs/call-flow.md, 3: never over 4 s of silence), and the IVR gives up on the backend at 5 s.
DEFAULT_SEND_SECONDS = 3.0
MAX_SEND_SECONDS = 3.0
DEFAULT_TWILIO_URL = "https://api.twilio.com"
_TWILIO_ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
_TWILIO_SERVICE_SID = re.compile(r"MG[0-9a-f]{32}")
_TWILIO_FROM = re.compile(r"\+[1-9]\d{6,14}|[A-Za-z0-9 ]{1,11}")  # E.164, or a sender id
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str | None = None
    messaging_service_sid: str | None = None
    api_url: str = DEFAULT_TWILIO_URL


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class FileConfig:
    path: Path


SmsGateway = TwilioConfig | WebhookConfig | FileConfig
_GATEWAY_OF = {"twilio": TwilioConfig, "webhook": WebhookConfig, "file": FileConfig}


def gateway_from_env(name: str, env: Mapping[str, str]) -> SmsGateway | None:
    """The settings of the sender `name` (None for those that have none)."""
    if name == "twilio":
        return _twilio(env)
    if name == "webhook":
        url = _https_url(env, "IVRS_SMS_WEBHOOK_URL", required=True)
        return WebhookConfig(url, _secret(env, "IVRS_SMS_WEBHOOK_TOKEN"))
    if name == "file":
        path = env.get("IVRS_SMS_FILE", "").strip()
        if not path:
            raise ValueError("IVRS_SMS_SENDER=file needs IVRS_SMS_FILE (a file for tests to read)")
        return FileConfig(Path(path))
    return None


def check(name: str, gateway: SmsGateway | None, send_seconds: float) -> None:
    """Refuse a sender name, its settings or a send time that cannot work."""
    if name not in SMS_SENDERS:
        raise ValueError(f"IVRS_SMS_SENDER must be one of {', '.join(SMS_SENDERS)}, not {name!r}")
    wanted = _GATEWAY_OF.get(name)
    if wanted is not None and not isinstance(gateway, wanted):
        raise ValueError(f"IVRS_SMS_SENDER={name} is not configured (docs/operations.md, SMS)")
    if not 0 < send_seconds <= MAX_SEND_SECONDS:
        raise ValueError(
            f"IVRS_SMS_SEND_SECONDS must be above 0 and at most {MAX_SEND_SECONDS:g}"
            " (the caller waits in silence meanwhile)"
        )


def send_seconds_from_env(env: Mapping[str, str]) -> float:
    value = env.get("IVRS_SMS_SEND_SECONDS", "").strip()
    if not value:
        return DEFAULT_SEND_SECONDS
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"IVRS_SMS_SEND_SECONDS: a number of seconds, not {value!r}") from None


def sender_for(name: str, gateway: SmsGateway | None = None) -> SmsSender:
    """The sender a setting names (`IVRS_SMS_SENDER`), with its settings."""
    check(name, gateway, DEFAULT_SEND_SECONDS)
    if isinstance(gateway, TwilioConfig):
        return TwilioSender(gateway)
    if isinstance(gateway, WebhookConfig):
        return WebhookSender(gateway)
    if isinstance(gateway, FileConfig):
        log.warning("sms_file_sender", path=str(gateway.path), note="for tests: codes in clear")
        return FileSender(gateway.path)
    return MemorySender() if name == "memory" else LogSender()


def _twilio(env: Mapping[str, str]) -> TwilioConfig:
    sid = env.get("IVRS_TWILIO_ACCOUNT_SID", "").strip()
    if not _TWILIO_ACCOUNT_SID.fullmatch(sid):
        raise ValueError(
            "IVRS_SMS_SENDER=twilio needs IVRS_TWILIO_ACCOUNT_SID: the Account SID, AC and 32"
            " hex digits (Twilio console)"
        )
    from_number = env.get("IVRS_TWILIO_FROM", "").strip() or None
    service = env.get("IVRS_TWILIO_MESSAGING_SERVICE_SID", "").strip() or None
    if (from_number is None) == (service is None):
        raise ValueError(
            "IVRS_SMS_SENDER=twilio needs one of IVRS_TWILIO_FROM (the sender number, +E.164,"
            " or sender id) and IVRS_TWILIO_MESSAGING_SERVICE_SID"
        )
    if from_number is not None and not _TWILIO_FROM.fullmatch(from_number):
        raise ValueError("IVRS_TWILIO_FROM: a number in E.164 (+852...) or a sender id")
    if service is not None and not _TWILIO_SERVICE_SID.fullmatch(service):
        raise ValueError("IVRS_TWILIO_MESSAGING_SERVICE_SID: MG and 32 hex digits")
    return TwilioConfig(
        account_sid=sid,
        auth_token=_secret(env, "IVRS_TWILIO_AUTH_TOKEN"),
        from_number=from_number,
        messaging_service_sid=service,
        api_url=_https_url(env, "IVRS_TWILIO_API_URL") or DEFAULT_TWILIO_URL,
    )


def _https_url(env: Mapping[str, str], name: str, *, required: bool = False) -> str:
    """An https:// URL (plain http only to this machine, for stand-ins in tests)."""
    value = env.get(name, "").strip()
    if not value:
        if required:
            raise ValueError(f"{name} is not set: give the https:// URL messages are posted to")
        return ""
    url = URL(value)
    if not url.host or url.scheme not in ("https", "http"):
        raise ValueError(f"{name}: not an http(s) URL")
    if url.scheme == "http" and url.host not in LOOPBACK_HOSTS:
        raise ValueError(f"{name}: use https:// (plain http only to 127.0.0.1, for tests)")
    return value


def _secret(env: Mapping[str, str], name: str) -> str:
    """A credential from `name`, or from the file `name`_FILE names; never both."""
    value, file = env.get(name, "").strip(), env.get(f"{name}_FILE", "").strip()
    if value and file:
        raise ValueError(f"give {name} or {name}_FILE, not both")
    if file:
        try:
            value = Path(file).read_text().strip()
        except OSError as e:
            raise ValueError(f"{name}_FILE: cannot read {file} ({e.strerror})") from None
        if not value:
            raise ValueError(f"{name}_FILE: {file} is empty")
    if not value:
        raise ValueError(f"{name} (or {name}_FILE, a file holding it) is not set")
    return value
