"""Truckers as the tests make them (tests/conftest.py's `make_trucker`): an account, a
hardware token and lodged cargo, with the keys a caller presses; and the backend's clock,
which the tests move instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp

from formats import keypad_keys


class TestClock:
    """The backend's clock in tests: real time to start with, moved on by the tests (a new
    token code each login, lockout periods) instead of sleeping."""

    __test__ = False  # a helper, not a test class

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        self._now = moment


@dataclass
class Trucker:
    account: str
    password: str
    seed: str
    ccrns: list[str]
    clock: TestClock
    vehicle: str = "AB1234"
    _token: pyotp.TOTP = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._token = pyotp.TOTP(self.seed, digits=6, interval=60)

    def code(self) -> str:
        """The code the token shows now; then the clock moves on one step, so the next login
        has a fresh code (a code once used is refused: replay)."""
        code = self._token.at(self.clock.now())
        self.clock.advance(60)
        return code

    def code_now(self) -> str:
        """The code the token shows now, the clock left where it is: for truckers who log in
        once each, many calls at once (each `code()` would move every other caller's clock on
        a step, and a code keyed a few steps before its login is checked is out of the window)."""
        return str(self._token.at(self.clock.now()))

    @property
    def vehicle_keys(self) -> str:
        letters = "".join(keypad_keys(c) for c in self.vehicle if c.isalpha())
        return f"{letters}# {''.join(c for c in self.vehicle if c.isdigit())}#"

    def login_keys(self, password: str | None = None) -> str:
        # The 8-digit account number submits itself: no `#` after it.
        return f"{self.account} {password or self.password}# {{totp}}#"

    def bundle_keys(self, ccrn: str | None = None) -> str:
        """English, log in, bundle one CCRN to the vehicle, submit; silent after the receipt
        (the goodbye ends the call)."""
        return f"3 {self.login_keys()} {self.vehicle_keys} 1 {ccrn or self.ccrns[0]}# 2"


MakeTrucker = Callable[..., Any]
