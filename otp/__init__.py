"""Security-token codes (TOTP, RFC 6238, and HOTP, RFC 4226) as a tiny API on `pyotp`.

Hardware tokens (FortiToken-200) show 6 digits every 60 s; FortiToken Mobile shows 6 or 8 digits
every 30 or 60 s, as provisioned. `verify` accepts a code one time step early or late and reports
which step matched, so the backend can remember the token's drift and refuse a replayed code
(pyotp itself does not track used steps). `resync` finds a token's step from two consecutive
codes, over a wider window. Times must be timezone-aware: pyotp reads naive datetimes as local
time, which would shift every code by the host's UTC offset.

Event tokens (HOTP) show the next code at each press of the button: their profile has the type
"hotp" and no period, and they are checked against a counter (`verify_hotp`: the next counter
the server expects, and a few after it for presses that never reached a login; a code of an
earlier counter is refused as a replay). `resync_hotp` finds the counter from two consecutive
codes further ahead.

Seed files (`otp.seedfile`: CSV and PSKC) and FortiToken Mobile enrolment (`otp.enrolment`:
otpauth URI and QR code) live in their own modules.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pyotp
from pyotp import OTPVerificationError

__all__ = [
    "HARDWARE",
    "MOBILE",
    "OtpType",
    "TokenKind",
    "TokenProfile",
    "VerifyResult",
    "RESYNC_WINDOW",
    "HOTP_LOOK_AHEAD",
    "HOTP_RESYNC_WINDOW",
    "counter_code",
    "current_code",
    "new_seed",
    "resync",
    "resync_hotp",
    "verify",
    "verify_hotp",
]

TokenKind = Literal["hardware", "mobile"]
OtpType = Literal["totp", "hotp"]

# Counters from the expected one on that a login accepts (RFC 4226, 7.4: presses of the button
# that never reached a login). Each one is another chance for a guess: 10 in a million.
HOTP_LOOK_AHEAD = 10
# How far ahead a resynchronisation looks; two consecutive codes make a chance match negligible.
HOTP_RESYNC_WINDOW = 1000


@dataclass(frozen=True)
class TokenProfile:
    """How a token computes its codes (what the server provisioned or the vendor shipped)."""

    kind: TokenKind
    digits: int = 6
    period: int | None = 30  # seconds between codes (totp); None for an event (hotp) token
    algorithm: Literal["sha1"] = "sha1"
    type: OtpType = "totp"

    def __post_init__(self) -> None:
        if self.kind not in ("hardware", "mobile"):
            raise ValueError(f"unknown token kind: {self.kind!r}")
        if self.digits not in (6, 8):
            raise ValueError(f"token codes have 6 or 8 digits, not {self.digits}")
        if self.type == "hotp":
            if self.kind == "mobile":
                raise ValueError("FortiToken Mobile tokens are time-based (totp)")
            if self.period is not None:
                raise ValueError("an event (hotp) token has no period")
        elif self.type != "totp":
            raise ValueError(f"unknown token type: {self.type!r}")
        elif self.period not in (30, 60):
            raise ValueError(f"token period is 30 or 60 s, not {self.period}")
        if self.algorithm != "sha1":
            raise ValueError(f"unsupported algorithm: {self.algorithm!r}")


HARDWARE = TokenProfile("hardware", digits=6, period=60)
MOBILE = TokenProfile("mobile", digits=6, period=30)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    step: int | None  # the time step (hotp: counter) the code matched, None when none
    drift: int  # matched step minus the current step (0 when nothing matched; hotp: always 0)
    replayed: bool  # the code matched a step already used up by an earlier login


REFUSED = VerifyResult(ok=False, step=None, drift=0, replayed=False)


def new_seed() -> str:
    """A fresh random seed: 160 bits (RFC 4226's recommended length) as 32 base32 characters."""
    return pyotp.random_base32(32)


def current_code(seed_base32: str, profile: TokenProfile, now: datetime) -> str:
    """The code a time-based (totp) token shows at `now` (what the simulator and tests type)."""
    return _totp(seed_base32, profile).at(_aware(now))


def counter_code(seed_base32: str, profile: TokenProfile, counter: int) -> str:
    """The code an event (hotp) token shows at `counter` (its presses since it was made)."""
    return _hotp(seed_base32, profile).at(counter)


def verify(
    seed_base32: str,
    code: str,
    profile: TokenProfile,
    now: datetime,
    last_used_step: int | None,
    window: int | None = None,
    drift: int = 0,
) -> VerifyResult:
    """Check a time-based (totp) token's `code` against the steps around `now` shifted by the
    token's remembered `drift` (±`window` steps, 1 by default), in constant time (pyotp). The
    result's drift is the token's new total drift; a step up to `last_used_step` is a replay.
    """
    totp = _totp(seed_base32, profile)
    if not _is_code(code, profile):
        return REFUSED
    now = _aware(now)
    window = 1 if window is None else window
    drifted_now = now + timedelta(seconds=drift * totp.interval)
    try:
        step = totp.verify_and_get_timecode(code, for_time=drifted_now, valid_window=window)
    except OTPVerificationError:
        return REFUSED
    replayed = last_used_step is not None and step <= last_used_step
    return VerifyResult(
        ok=not replayed, step=step, drift=step - totp.timecode(now), replayed=replayed
    )


def verify_hotp(
    seed_base32: str, code: str, profile: TokenProfile, counter: int, window: int | None = None
) -> VerifyResult:
    """Check an event (hotp) token's `code` against the `window` counters from `counter`, the
    next one the server expects (HOTP_LOOK_AHEAD by default). The token's next counter is then
    the matched step + 1. A code of one of the `window` counters before `counter` is a replay.
    Every counter is compared, in constant time: how long it takes tells nothing."""
    hotp = _hotp(seed_base32, profile)
    if not _is_code(code, profile):
        return REFUSED
    window = window or HOTP_LOOK_AHEAD
    ahead = _first_match(hotp, code, range(counter, counter + window))
    if ahead is not None:
        return VerifyResult(ok=True, step=ahead, drift=0, replayed=False)
    replayed = _first_match(hotp, code, range(max(0, counter - window), counter)) is not None
    return VerifyResult(ok=False, step=None, drift=0, replayed=replayed)


RESYNC_WINDOW = 10  # steps each side of now: 10 min of a hardware token's clock, 5 of a phone's


def resync(
    seed_base32: str,
    first_code: str,
    second_code: str,
    profile: TokenProfile,
    now: datetime,
    window: int | None = None,
) -> int | None:
    """The time step a time-based (totp) token shows `second_code` at, when `first_code` and
    `second_code` are the codes of two consecutive steps and the second step is within
    ±`window` steps of `now` (RESYNC_WINDOW by default); None when no such pair exists, or when
    more than one does (that would be a guess).

    The token's drift is then that step minus the current step. The wide window is acceptable
    only here: two codes in a row are needed, a chance of about one in 10^12 for 6 digits.
    """
    totp = _totp(seed_base32, profile)
    current = totp.timecode(_aware(now))
    window = RESYNC_WINDOW if window is None else window
    steps = range(current - window, current + window + 1)  # where the second code may be
    return _consecutive(totp, profile, first_code, second_code, steps)


def resync_hotp(
    seed_base32: str,
    first_code: str,
    second_code: str,
    profile: TokenProfile,
    counter: int,
    window: int | None = None,
) -> int | None:
    """The counter at which an event (hotp) token shows `second_code`, right after
    `first_code`, looked for among the `window` counters after `counter`, the next one the
    server expects (HOTP_RESYNC_WINDOW by default); None as for `resync`."""
    window = HOTP_RESYNC_WINDOW if window is None else window
    steps = range(counter + 1, counter + 1 + window)  # where the second code may be
    return _consecutive(_hotp(seed_base32, profile), profile, first_code, second_code, steps)


def _consecutive(
    token: pyotp.OTP, profile: TokenProfile, first_code: str, second_code: str, steps: range
) -> int | None:
    """The only step of `steps` whose code is `second_code` and whose previous step's code is
    `first_code`; None when there is none or more than one."""
    codes = (first_code, second_code)
    if not all(_is_code(c, profile) for c in codes) or len(steps) < 1:
        return None
    shown = {step: token.generate_otp(step) for step in range(steps.start - 1, steps.stop)}
    found = [
        step
        for step in steps
        # Constant-time comparisons, like every check of a secret code here.
        if hmac.compare_digest(shown[step - 1], first_code)
        and hmac.compare_digest(shown[step], second_code)
    ]
    return found[0] if len(found) == 1 else None


def _first_match(hotp: pyotp.HOTP, code: str, counters: range) -> int | None:
    matches = [c for c in counters if hmac.compare_digest(hotp.at(c), code)]
    return matches[0] if matches else None


def _is_code(code: str, profile: TokenProfile) -> bool:
    """The token's number of ASCII digits (str.isdigit alone also takes '²' and '１')."""
    return len(code) == profile.digits and code.isascii() and code.isdigit()


def _hotp(seed_base32: str, profile: TokenProfile) -> pyotp.HOTP:
    if profile.type != "hotp":
        raise ValueError("a time-based (totp) token's codes follow the clock, not a counter")
    digest = getattr(hashlib, profile.algorithm)
    return pyotp.HOTP(seed_base32, digits=profile.digits, digest=digest)


def _totp(seed_base32: str, profile: TokenProfile) -> pyotp.TOTP:
    if profile.type != "totp" or profile.period is None:
        raise ValueError("an event (hotp) token's codes follow a counter, not the clock")
    digest = getattr(hashlib, profile.algorithm)
    return pyotp.TOTP(seed_base32, digits=profile.digits, digest=digest, interval=profile.period)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("token codes need a timezone-aware datetime (UTC)")
    return now
