"""The login sessions the IVR holds for its calls (backend/sessions.py).

A successful login returns a session token; bundling, cancelling and enquiries for that account
must carry it (header `Login-Session`). The client keeps each call's token here, sends it with
those requests, and forgets it when the call ends: the call flow never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADER = "Login-Session"


@dataclass
class LoginSessions:
    # (account, call id) -> token; the latest login of a call for an account wins.
    _tokens: dict[tuple[str, int | None], str] = field(default_factory=dict, repr=False)

    def keep(self, account: str, call_id: int | None, body: dict[str, object]) -> None:
        session = body.get("session")
        if isinstance(session, dict) and isinstance(session.get("token"), str):
            self._tokens[(account, call_id)] = session["token"]

    def header(
        self, account: str, call_id: int | None = None, any_call: bool = False
    ) -> dict[str, str]:
        """The header for a request of `account` in `call_id` (or, with `any_call`, in the
        latest call that logged in to it); empty without a login (the backend refuses)."""
        token = self._tokens.get((account, call_id))
        if token is None and any_call:
            token = next((t for (a, _), t in reversed(self._tokens.items()) if a == account), None)
        return {HEADER: token} if token else {}

    def end_call(self, call_id: int) -> None:
        for key in [k for k in self._tokens if k[1] == call_id]:
            del self._tokens[key]
