"""The backend's configuration, read once from `IVRS_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from cryptography.fernet import Fernet
from yarl import URL

from backend.sms import config as sms_config

log = structlog.get_logger(__name__)

ARGON2_PROFILES = ("rfc9106", "test")
DEFAULT_TERMS_VERSION = "2026-11"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/ivrs.db"
DEFAULT_API_TOKEN = "ivrs-dev-token"
DEFAULT_KEY_FILE = Path("var/secret.key")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class BackendSettings:
    database_url: str = DEFAULT_DATABASE_URL
    api_token: str = field(default=DEFAULT_API_TOKEN, repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    # Backend processes sharing the port (backend/workers.py; PostgreSQL only when > 1).
    workers: int = 1
    # Database connections each backend process keeps, and no more (backend/database.py).
    database_connections: int = 5
    argon2_profile: str = "rfc9106"
    # Fernet key that encrypts token seeds at rest; kept out of the database and of reprs.
    secret_key: bytes = field(default=b"", repr=False)
    recordings_dir: Path = Path("var/recordings")
    # The version of the terms and conditions a caller accepts now (docs/call-flow.md, 3).
    terms_version: str = DEFAULT_TERMS_VERSION
    # A service suspension, [from, until): aware datetimes, both or neither.
    suspended_from: datetime | None = None
    suspended_until: datetime | None = None
    # Who delivers SMS when the app is not given a sender: "log" (records delivery only),
    # "memory" (kept in the process, for demos and tests), "file" (for tests in another
    # process), "twilio" or "webhook", with its settings (backend/sms/config.py); and the
    # longest one message may take, retries included (the caller waits meanwhile).
    sms_sender: str = "log"
    sms_gateway: sms_config.SmsGateway | None = field(default=None, repr=False)
    sms_send_seconds: float = sms_config.DEFAULT_SEND_SECONDS
    # Per-account lockout: this many failed logins in a row lock the account for this long.
    lockout_failures: int = 5
    lockout_period: timedelta = timedelta(minutes=15)
    # Per-caller-number throttle, against one caller trying many accounts: this many failed
    # logins from one caller id within the window refuse its logins, unchecked, for the period.
    # 0 failures turns it off. Callers without a number would share one count, which one
    # attacker could fill to shut out every honest caller who withholds the number: off by
    # default (the per-account lockout still holds for them; docs/security.md).
    caller_throttle_failures: int = 10
    caller_throttle_anonymous_failures: int = 0
    caller_throttle_window: timedelta = timedelta(minutes=15)
    caller_throttle_period: timedelta = timedelta(minutes=30)
    # A FortiToken Mobile enrolment never activated by a login within this time is refused and
    # revoked (its QR code may have been seen by others meanwhile).
    enrolment_expiry: timedelta = timedelta(hours=24)
    # The supervisors' console (backend/console/): its session cookie is Secure (HTTPS only)
    # unless plain HTTP is allowed, for a demo on loopback; sessions end after this long idle,
    # and after the lifetime whatever happens.
    console_plain_http: bool = False
    console_idle_timeout: timedelta = timedelta(minutes=30)
    console_session_lifetime: timedelta = timedelta(hours=12)
    # Asterisk's AMI, for the console's "listen in" (Originate ChanSpy to a supervisor's
    # extension, dialled in `listen_context`); unset host: no listening in.
    ami_host: str | None = None
    ami_port: int = 5038
    ami_username: str = ""
    ami_secret: str = field(default="", repr=False)
    listen_context: str = "ivrs-supervisors"
    # Injectable so tests and the demo can move time (token codes, lockouts, expiry).
    clock: Callable[[], datetime] = utc_now

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BackendSettings:
        env = os.environ if environ is None else environ
        host, port = _host_and_port(env)
        profile = env.get("IVRS_ARGON2_PROFILE", "rfc9106")
        if profile not in ARGON2_PROFILES:
            raise ValueError(f"IVRS_ARGON2_PROFILE must be one of {ARGON2_PROFILES}")
        sms_sender = env.get("IVRS_SMS_SENDER") or "log"
        return cls(
            database_url=env.get("IVRS_DATABASE_URL", DEFAULT_DATABASE_URL),
            api_token=env.get("IVRS_API_TOKEN", DEFAULT_API_TOKEN),
            host=host,
            port=port,
            workers=max(1, _count(env, "IVRS_BACKEND_WORKERS", 1)),
            database_connections=max(1, _count(env, "IVRS_DATABASE_CONNECTIONS", 5)),
            argon2_profile=profile,
            secret_key=_secret_key(env),
            recordings_dir=Path(env.get("IVRS_RECORDINGS_DIR", "var/recordings")),
            terms_version=env.get("IVRS_TERMS_VERSION") or DEFAULT_TERMS_VERSION,
            suspended_from=_moment(env, "IVRS_SUSPENDED_FROM"),
            suspended_until=_moment(env, "IVRS_SUSPENDED_UNTIL"),
            sms_sender=sms_sender,
            sms_gateway=sms_config.gateway_from_env(sms_sender, env),
            sms_send_seconds=sms_config.send_seconds_from_env(env),
            lockout_failures=_count(env, "IVRS_LOCKOUT_FAILURES", 5),
            lockout_period=_seconds(env, "IVRS_LOCKOUT_SECONDS", 15 * 60),
            caller_throttle_failures=_count(env, "IVRS_CALLER_THROTTLE_FAILURES", 10),
            caller_throttle_anonymous_failures=_count(
                env, "IVRS_CALLER_THROTTLE_ANONYMOUS_FAILURES", 0
            ),
            caller_throttle_window=_seconds(env, "IVRS_CALLER_THROTTLE_WINDOW_SECONDS", 15 * 60),
            caller_throttle_period=_seconds(env, "IVRS_CALLER_THROTTLE_PERIOD_SECONDS", 30 * 60),
            enrolment_expiry=_seconds(env, "IVRS_ENROLMENT_EXPIRY_SECONDS", 24 * 3600),
            console_plain_http=env.get("IVRS_CONSOLE_PLAIN_HTTP", "") in ("1", "true", "yes"),
            console_idle_timeout=_seconds(env, "IVRS_CONSOLE_IDLE_SECONDS", 30 * 60),
            console_session_lifetime=_seconds(env, "IVRS_CONSOLE_SESSION_SECONDS", 12 * 3600),
            ami_host=env.get("IVRS_AMI_HOST") or None,
            ami_port=_count(env, "IVRS_AMI_PORT", 5038),
            ami_username=env.get("IVRS_AMI_USERNAME", ""),
            ami_secret=env.get("IVRS_AMI_SECRET", ""),
            listen_context=env.get("IVRS_LISTEN_CONTEXT") or "ivrs-supervisors",
        )

    def __post_init__(self) -> None:
        start, end = self.suspended_from, self.suspended_until
        if (start is None) != (end is None):
            raise ValueError("IVRS_SUSPENDED_FROM and IVRS_SUSPENDED_UNTIL go together")
        if start is not None and end is not None:
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("a suspension needs times with a UTC offset")
            if start >= end:
                raise ValueError("IVRS_SUSPENDED_FROM must come before IVRS_SUSPENDED_UNTIL")
        sms_config.check(self.sms_sender, self.sms_gateway, self.sms_send_seconds)
        if self.lockout_failures < 1 or self.lockout_period <= timedelta(0):
            raise ValueError("the lockout needs at least 1 failure and a positive period")
        if min(self.caller_throttle_failures, self.caller_throttle_anonymous_failures) < 0 or min(
            self.caller_throttle_window, self.caller_throttle_period
        ) <= timedelta(0):
            raise ValueError("the caller throttle needs a positive window and period")
        if self.enrolment_expiry <= timedelta(0):
            raise ValueError("IVRS_ENROLMENT_EXPIRY_SECONDS must be positive")

    def suspended(self, now: datetime) -> bool:
        """True while `now` is within the configured suspension [from, until)."""
        start, end = self.suspended_from, self.suspended_until
        return start is not None and end is not None and start <= now < end


def _host_and_port(env: Mapping[str, str]) -> tuple[str, int]:
    """IVRS_BACKEND_HOST/PORT win; otherwise IVRS_BACKEND_URL (what the IVR uses) gives both."""
    url = URL(env.get("IVRS_BACKEND_URL", "http://127.0.0.1:8080"))
    host = env.get("IVRS_BACKEND_HOST") or url.host or "127.0.0.1"
    port = int(env.get("IVRS_BACKEND_PORT") or url.port or 8080)
    return host, port


def _moment(env: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset (Hong Kong: +08:00), or None when unset."""
    if not (value := env.get(name, "").strip()):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name}: give the UTC offset, e.g. 2026-12-01T00:00:00+08:00")
    return moment


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(f"{name}: a whole number, not {value!r}")
    return int(value)


def _seconds(env: Mapping[str, str], name: str, default: int) -> timedelta:
    return timedelta(seconds=_count(env, name, default))


def _secret_key(env: Mapping[str, str]) -> bytes:
    if key := env.get("IVRS_SECRET_KEY"):
        return _checked_key(key.encode(), "IVRS_SECRET_KEY")
    if key_file := env.get("IVRS_SECRET_KEY_FILE"):
        # A configured file that is missing is a deployment error, never a reason for a new key
        # (seeds encrypted with the lost key would become unreadable without notice).
        try:
            stored = Path(key_file).read_bytes().strip()
        except OSError as e:
            why = (e.strerror or type(e).__name__).lower()
            raise ValueError(
                f"IVRS_SECRET_KEY_FILE={key_file}: {why}; restore the key file "
                "that encrypted the token seeds, or correct IVRS_SECRET_KEY_FILE"
            ) from None
        return _checked_key(stored, key_file)
    if DEFAULT_KEY_FILE.exists():
        return _checked_key(DEFAULT_KEY_FILE.read_bytes().strip(), str(DEFAULT_KEY_FILE))
    return _new_key_file(DEFAULT_KEY_FILE)


def _new_key_file(path: Path) -> bytes:
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never overwrite a key another process just wrote; 0600 from the first byte.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _checked_key(path.read_bytes().strip(), str(path))
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    log.warning("secret_key_generated", path=str(path))
    return key


def _checked_key(key: bytes, source: str) -> bytes:
    try:
        Fernet(key)
    except ValueError:
        raise ValueError(f"{source}: not a Fernet key (32 url-safe base64-encoded bytes)") from None
    return key
