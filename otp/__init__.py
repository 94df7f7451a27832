"""Security-token codes (TOTP, RFC 6238) as a tiny API on `pyotp`.

Hardware tokens (FortiToken-200) show 6 digits every 60 s; FortiToken Mobile shows 6 or 8 digits
every 30 or 60 s, as provisioned. `verify` accepts a code one time step early or late and reports
which step matched, so the backend can remember the token's drift and refuse a replayed code
(pyotp itself does not track used steps). `resync` finds a token's step from two consecutive
codes, over a wider window. Times must be timezone-aware: pyotp reads naive datetimes as local
time, which would shift every code by the host's UTC offset.

Seed files (`otp.seedfile`: CSV and PSKC) and FortiToken Mobile enrolment (`otp.enrolment`:
otpauth URI and QR code) live in their own modules.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pyotp
from pyotp import OTPVerificationError

__all__ = [
    "HARDWARE",
    "MOBILE",
    "TokenProfile",
    "VerifyResult",
    "RESYNC_WINDOW",
    "current_code",
    "new_seed",
    "resync",
    "verify",
]

TokenKind = Literal["hardware", "mobile"]


@dataclass(frozen=True)
class TokenProfile:
    """How a token computes its codes (what the server provisioned or the vendor shipped)."""

    kind: TokenKind
    digits: int = 6
    period: int = 30
    algorithm: Literal["sha1"] = "sha1"

    def __post_init__(self) -> None:
        if self.kind not in ("hardware", "mobile"):
            raise ValueError(f"unknown token kind: {self.kind!r}")
        if self.digits not in (6, 8):
            raise ValueError(f"token codes have 6 or 8 digits, not {self.digits}")
        if self.period not in (30, 60):
            raise ValueError(f"token period is 30 or 60 s, not {self.period}")
        if self.algorithm != "sha1":
            raise ValueError(f"unsupported algorithm: {self.algorithm!r}")


HARDWARE = TokenProfile("hardware", digits=6, period=60)
MOBILE = TokenProfile("mobile", digits=6, period=30)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    step: int | None  # the time step the code matched, None when it matched none
    drift: int  # matched step minus the current step (0 when nothing matched)
    replayed: bool  # the code matched a step already used up by an earlier login


def new_seed() -> str:
    """A fresh random seed: 160 bits (RFC 4226's recommended length) as 32 base32 characters."""
    return pyotp.random_base32(32)


def current_code(seed_base32: str, profile: TokenProfile, now: datetime) -> str:
    """The code the token shows at `now` (what the simulator and tests type)."""
    return _totp(seed_base32, profile).at(_aware(now))


def verify(
    seed_base32: str,
    code: str,
    profile: TokenProfile,
    now: datetime,
    last_used_step: int | None,
    window: int = 1,
) -> VerifyResult:
    """Check `code` against the steps around `now` (±`window`), in constant time (pyotp).

    To honour a token's remembered drift, pass `now` shifted by drift × period; the returned
    drift is then relative to that shifted step.
    """
    totp = _totp(seed_base32, profile)
    now = _aware(now)
    if len(code) != profile.digits or not code.isdigit():
        return VerifyResult(ok=False, step=None, drift=0, replayed=False)
    try:
        step = totp.verify_and_get_timecode(code, for_time=now, valid_window=window)
    except OTPVerificationError:
        return VerifyResult(ok=False, step=None, drift=0, replayed=False)
    replayed = last_used_step is not None and step <= last_used_step
    return VerifyResult(
        ok=not replayed, step=step, drift=step - totp.timecode(now), replayed=replayed
    )


RESYNC_WINDOW = 10  # steps each side of now: 10 min of a hardware token's clock, 5 of a phone's


def resync(
    seed_base32: str,
    first_code: str,
    second_code: str,
    profile: TokenProfile,
    now: datetime,
    window: int = RESYNC_WINDOW,
) -> int | None:
    """The time step the token shows `second_code` at, when `first_code` and `second_code` are
    the codes of two consecutive steps and the second step is within ±`window` steps of `now`;
    None when no such pair exists, or when more than one does (that would be a guess).

    The token's drift is then that step minus the current step. The wide window is acceptable
    only here: two codes in a row are needed, a chance of about one in 10^12 for 6 digits.
    """
    totp = _totp(seed_base32, profile)
    now = _aware(now)
    codes = (first_code, second_code)
    if any(len(c) != profile.digits or not c.isdigit() for c in codes) or window < 1:
        return None
    current = totp.timecode(now)
    steps = range(current - window, current + window + 1)  # where the second code may be
    shown = {step: totp.generate_otp(step) for step in range(steps.start - 1, steps.stop)}
    found = [
        step
        for step in steps
        # Constant-time comparisons, like every check of a secret code here.
        if hmac.compare_digest(shown[step - 1], first_code)
        and hmac.compare_digest(shown[step], second_code)
    ]
    return found[0] if len(found) == 1 else None


def _totp(seed_base32: str, profile: TokenProfile) -> pyotp.TOTP:
    digest = getattr(hashlib, profile.algorithm)
    return pyotp.TOTP(seed_base32, digits=profile.digits, digest=digest, interval=profile.period)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("token codes need a timezone-aware datetime (UTC)")
    return now
