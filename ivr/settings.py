"""Settings of the FastAGI server, from `IVRS_*` environment variables (DESIGN.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass


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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> IvrSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            agi_host=env.get("IVRS_AGI_HOST", cls.agi_host),
            agi_port=int(env.get("IVRS_AGI_PORT", cls.agi_port)),
            backend_url=env.get("IVRS_BACKEND_URL", cls.backend_url),
            api_token=env.get("IVRS_API_TOKEN", cls.api_token),
            backend_timeout=float(env.get("IVRS_BACKEND_TIMEOUT", cls.backend_timeout)),
        )
