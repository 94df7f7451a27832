"""Settings of the FastAGI server, from `IVRS_*` environment variables (docs/design.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IvrSettings:
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    script: str = "ivrs"
    backend_url: str = "http://127.0.0.1:8080"
    api_token: str = "ivrs-dev-token"
    backend_timeout: float = 5.0
    timezone: str = "Asia/Hong_Kong"
    first_digit_timeout_ms: int = 8000
    inter_digit_timeout_ms: int = 5000
    # GET DATA needs a prompt; the rest of an entry is read while this (short) file plays.
    entry_silence: str = "silence/1"
    max_failures: int = 3
    # Circuit breaker (backend_client/breaker.py): after this many failures in a row (a backend
    # down, not busy), requests fail at once for `breaker_reset_s`, then one probe goes through.
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    # Call logs the backend could not take wait here (backend_client/spool.py); one directory
    # per FastAGI process.
    spool_dir: str = "var/spool"
    # Graceful shutdown (SIGTERM): live calls may finish for this long, then hear goodbye.
    shutdown_grace_s: float = 60.0
    # AMI, to mute the recording while secrets are keyed (ivr/ami_connection.py); no host: the
    # AGI fallback.
    ami_host: str | None = None
    ami_port: int = 5038
    ami_username: str = "ivrs"
    ami_secret: str = field(default="", repr=False)
    ami_timeout: float = 2.0
    # Who may connect (docs/security.md): the address above is loopback unless set; these
    # peers' addresses only, when given (IVRS_AGI_ALLOWED_PEERS, comma-separated).
    agi_allowed_peers: tuple[str, ...] = ()
    # Seconds Asterisk may take to answer one command: longer than the longest prompt plus a
    # GET DATA's whole wait (its prompt, then up to 32 digits at inter_digit_timeout_ms).
    # A peer silent longer is taken for gone: the call ends as hung up.
    agi_reply_timeout_s: float = 300.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> IvrSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            agi_host=env.get("IVRS_AGI_HOST", cls.agi_host),
            agi_port=_whole(env, "IVRS_AGI_PORT", cls.agi_port),
            backend_url=env.get("IVRS_BACKEND_URL", cls.backend_url),
            api_token=env.get("IVRS_API_TOKEN", cls.api_token),
            backend_timeout=_seconds(env, "IVRS_BACKEND_TIMEOUT", cls.backend_timeout),
            breaker_failures=_whole(env, "IVRS_BREAKER_FAILURES", cls.breaker_failures),
            breaker_reset_s=_seconds(env, "IVRS_BREAKER_RESET_S", cls.breaker_reset_s),
            spool_dir=env.get("IVRS_SPOOL_DIR", cls.spool_dir),
            shutdown_grace_s=_seconds(
                env, "IVRS_SHUTDOWN_GRACE_S", cls.shutdown_grace_s, zero=True
            ),
            ami_host=env.get("IVRS_AMI_HOST") or None,
            ami_port=_whole(env, "IVRS_AMI_PORT", cls.ami_port),
            ami_username=env.get("IVRS_AMI_USERNAME", cls.ami_username),
            ami_secret=env.get("IVRS_AMI_SECRET", cls.ami_secret),
            agi_allowed_peers=tuple(
                p.strip() for p in env.get("IVRS_AGI_ALLOWED_PEERS", "").split(",") if p.strip()
            ),
            agi_reply_timeout_s=_seconds(env, "IVRS_AGI_REPLY_TIMEOUT_S", cls.agi_reply_timeout_s),
        )


def _whole(env: dict[str, str], name: str, default: int) -> int:
    """A whole number above 0, else a ValueError that names the variable."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"{name}: a whole number above 0, not {value!r}")
    return int(value)


def _seconds(env: dict[str, str], name: str, default: float, zero: bool = False) -> float:
    """Seconds above 0 (or 0 itself when `zero`), else a ValueError that names the variable."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 or (zero and seconds == 0)):  # nan fails both
        least = "0 or more" if zero else "more than 0"
        raise ValueError(f"{name}: a number of seconds, {least}, not {value!r}")
    return seconds
