"""The audit log: who did what to which call, account or token, and when.

Written by the supervisors' console (sign-ins, playbacks, downloads, listen-in, lock, unlock,
enrolments) and by the `ivrs admin` commands that change accounts or tokens. An actor is
"supervisor:NAME" in the console, "cli:USER" on the command line, "unknown" for a failed
sign-in. Details never hold a secret: secret-named entries are masked before they are stored,
as in call events.

A change is written with its entry in one transaction (`add`, or `changed` with the `Actor`
the admin functions take), so neither is ever kept without the other; `write` (a transaction
of its own) is for events that change nothing else: sign-ins, playbacks, listening in.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.call_logs import masked
from backend.database import Database
from backend.models import AuditEntry

UNKNOWN_ACTOR = "unknown"


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and from where (a browser's address; None on the command line)."""

    name: str  # "supervisor:NAME", "cli:USER"
    source: str | None = None


def cli_actor() -> Actor:
    """The actor of an `ivrs admin` command: the operating-system user who ran it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return Actor(f"cli:{user}")


def add(
    session: AsyncSession,
    db: Database,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    source: str | None = None,
    ticket: str | None = None,
) -> AuditEntry:
    """An entry in the caller's transaction (so it commits, or not, with the change)."""
    entry = AuditEntry(
        at=db.now(),
        actor=actor[:96],
        action=action,
        target=target[:128] if target else None,
        detail=masked(detail or {}),
        source=source[:64] if source else None,
        ticket=ticket,
    )
    session.add(entry)
    return entry


def changed(
    session: AsyncSession,
    db: Database,
    by: Actor | None,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """The entry of a change made in `session`, by `by` (None: nobody to name, as the demo's
    and the tests' set-up: no entry)."""
    if by is not None:
        add(session, db, by.name, action, target, detail, source=by.source)


async def write(
    db: Database,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    source: str | None = None,
) -> None:
    """An entry in a transaction of its own."""
    async with db.sessions.begin() as session:
        add(session, db, actor, action, target, detail, source=source)


async def write_once(
    db: Database,
    ticket: str,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    source: str | None = None,
) -> bool:
    """An entry for `ticket` unless it has one (a playback's many Range requests write one
    entry); True when this wrote it. The unique ticket decides when two requests race."""
    async with db.sessions() as session:
        if await session.scalar(select(AuditEntry.id).where(AuditEntry.ticket == ticket)):
            return False
    try:
        async with db.sessions.begin() as session:
            add(session, db, actor, action, target, detail, source=source, ticket=ticket)
    except IntegrityError:
        return False
    return True
