"""Who may do what in the console, and who is signed in.

Roles (issue 8): supervisor (calls and recordings), admin (also accounts and tokens), auditor
(also the audit log). An admin does not read the audit log and an auditor does not change
accounts: the one who acts is not the one who checks. Downloads of recordings are for admins
and auditors; listening in to a live call for supervisors and admins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from backend.models import SupervisorRole

ROLES: tuple[SupervisorRole, ...] = ("supervisor", "admin", "auditor")
Permission = Literal["calls", "play", "download", "listen", "accounts", "audit", "summary"]
PERMISSIONS: dict[Permission, frozenset[SupervisorRole]] = {
    "calls": frozenset(ROLES),
    "play": frozenset(ROLES),
    "summary": frozenset(ROLES),
    "download": frozenset({"admin", "auditor"}),
    "listen": frozenset({"supervisor", "admin"}),
    "accounts": frozenset({"admin"}),
    "audit": frozenset({"auditor"}),
}


@dataclass(frozen=True)
class SignedIn:
    """The supervisor behind a request, and their session."""

    session_id: int
    token_hash: str = field(repr=False)
    supervisor_id: int
    name: str
    role: SupervisorRole
    extension: str | None
    csrf_token: str = field(repr=False)

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"supervisor:{self.name}"

    def may(self, permission: Permission) -> bool:
        return self.role in PERMISSIONS[permission]


SIGNED_IN: web.RequestKey[SignedIn | None] = web.RequestKey("console_signed_in")
