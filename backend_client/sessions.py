"""The login sessions the IVR holds for its calls (backend/sessions.py), and what each login
answered that later prompts need.

A successful login returns a session token; bundling, cancelling and enquiries for that account
must carry it (header `Login-Session`). The client keeps each call's token here, sends it with
those requests, and forgets it when the call ends: the call flow never sees it.

The login also answers with the account's recent vehicles (the vehicle prompt offers them):
kept here for the call, and brought up to date by the call's own bundles (the most recent
vehicle first, as the backend orders them), so no request asks for them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

HEADER = "Login-Session"
RECENT_VEHICLES = 3  # as many as the backend gives (backend/bundling.py)

Key = tuple[str, int | None]  # (account, call id)
T = TypeVar("T")


@dataclass
class LoginSessions:
    # (account, call id) -> token; the latest login of a call for an account wins.
    _tokens: dict[Key, str] = field(default_factory=dict, repr=False)
    # (account, call id) -> the account's recent vehicle marks, most recent first.
    _recent: dict[Key, list[str]] = field(default_factory=dict, repr=False)

    def keep(self, account: str, call_id: int | None, body: dict[str, object]) -> None:
        session = body.get("session")
        if isinstance(session, dict) and isinstance(session.get("token"), str):
            self._tokens[(account, call_id)] = session["token"]
        answered = body.get("account")
        recent = answered.get("recent_vehicles") if isinstance(answered, dict) else None
        if isinstance(recent, list):
            self._recent[(account, call_id)] = [str(m) for m in recent][:RECENT_VEHICLES]

    def header(
        self, account: str, call_id: int | None = None, any_call: bool = False
    ) -> dict[str, str]:
        """The header for a request of `account` in `call_id` (or, with `any_call`, in the
        latest call that logged in to it); empty without a login (the backend refuses)."""
        token = self._tokens.get((account, call_id))
        if token is None and any_call:
            token = _latest(self._tokens, account)
        return {HEADER: token} if token else {}

    def recent_vehicles(self, account: str) -> list[str]:
        """The account's recent vehicles, as its latest login in a live call answered them."""
        recent: list[str] | None = _latest(self._recent, account)
        return list(recent or [])

    def bundled(self, account: str, vehicle_mark: str) -> None:
        """A bundle was made to `vehicle_mark`: it is now the account's most recent vehicle."""
        for (a, _), recent in self._recent.items():
            if a == account:
                recent[:] = [vehicle_mark, *(m for m in recent if m != vehicle_mark)]
                del recent[RECENT_VEHICLES:]

    def end_call(self, call_id: int) -> None:
        for kept in (self._tokens, self._recent):
            for key in [k for k in kept if k[1] == call_id]:
                del kept[key]


def _latest(kept: dict[Key, T], account: str) -> T | None:
    return next((v for (a, _), v in reversed(kept.items()) if a == account), None)
