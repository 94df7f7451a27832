"""Login sessions: what a phone login returns, and what bundling, cancelling and enquiries need.

The service token says "this is the IVR"; it does not say which trucker. So a successful login
(backend/login.py) also returns a random session token, and `POST /v1/bundles`, `POST
/v1/unbundle` and `GET /v1/bundles` act for an account only with a live one of that account
(header `Login-Session`). A session is short-lived (`LIFETIME`), bound to the login's call (a
request naming another call is refused) and ends with that call (once the call log is ended,
by the IVR or by the hang-up handler). Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Insert, Table, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.call_logs import KNOWN_CALL_ID
from backend.database import Database
from backend.errors import BackendError
from backend.models import Account, Call, LoginSession

HEADER = "Login-Session"
LIFETIME = timedelta(minutes=30)  # longer than any call; the call's end ends it sooner
REFUSED = "A live login session of this account, from this call, is required."
# Built once, with a named parameter (see call_logs).
_SESSION = (
    select(
        LoginSession.expires_at,
        LoginSession.call_id,
        Call.ended_at,
        Account.id,
        Account.number,
        Account.mobile,
    )
    .join(Account, Account.id == LoginSession.account_id)
    .outerjoin(Call, Call.id == LoginSession.call_id)
    .where(LoginSession.token_hash == bindparam("token_hash"))
)
# Core statements on the table: the ORM's bulk DELETE and its flush of a new object cost more.
_TABLE = cast(Table, LoginSession.__table__)
DELETE_EXPIRED = delete(_TABLE).where(
    _TABLE.c.account_id == bindparam("account_id"), _TABLE.c.expires_at <= bindparam("now")
)


def new_session_row(*conditions: ColumnElement[bool]) -> Insert:
    """The new session's row (the parameters of new_session); in a WITH statement, only where
    `conditions` (on its other parts) hold."""
    return insert(_TABLE).from_select(
        ["token_hash", "account_id", "call_id", "expires_at"],
        select(
            bindparam("token_hash", type_=_TABLE.c.token_hash.type),
            bindparam("account_id", type_=_TABLE.c.account_id.type),
            # An unknown call id does not refuse a login (as its event is skipped,
            # call_logs.record_event): its session then serves no request naming a call.
            KNOWN_CALL_ID,
            bindparam("expires_at", type_=_TABLE.c.expires_at.type),
        ).where(*conditions),
    )


NEW_SESSION = new_session_row()


@dataclass(frozen=True)
class SessionAccount:
    """The account a live session acts for, as the session check read it (with the session, in
    one query): the request's work needs no read of its own for it."""

    id: int
    number: str
    mobile: str | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(
    account_id: int, call_id: int | None, now: datetime
) -> tuple[str, datetime, dict[str, Any]]:
    """A new session for the account in `call_id`: the token (given once), its expiry, and the
    parameters of DELETE_EXPIRED and NEW_SESSION, which store it in the successful login's unit
    of work (backend/login.py) and delete the account's expired ones (housekeeping)."""
    token = secrets.token_urlsafe(32)
    expires_at = now + LIFETIME
    params = {
        "token_hash": _hash(token),
        "account_id": account_id,
        "call": call_id,
        "expires_at": expires_at,
        "now": now,
    }
    return token, expires_at, params


async def open_session(
    session: AsyncSession, account_id: int, call_id: int | None, now: datetime
) -> tuple[str, datetime]:
    """new_session, stored in `session`'s unit of work: the token and its expiry."""
    token, expires_at, params = new_session(account_id, call_id, now)
    await session.execute(DELETE_EXPIRED, params)
    await session.execute(NEW_SESSION, params)
    return token, expires_at


async def require(
    db: Database, token: str | None, account: str, call_id: int | None, any_call: bool = False
) -> SessionAccount:
    """Refuse (401 session_required) unless `token` is a live session of `account`, from the
    call `call_id` (any call of the session's own, for requests that name none); the account."""
    if not token or len(token) > 128:
        raise BackendError("session_required", REFUSED)
    async with db.sessions.connect() as connection:
        found = (await connection.execute(_SESSION, {"token_hash": _hash(token)})).first()
    if found is None:
        raise BackendError("session_required", REFUSED)
    expires_at, session_call_id, call_ended_at, account_id, number, mobile = found
    live = expires_at > db.now() and call_ended_at is None
    same_call = any_call or session_call_id == call_id
    if not (live and number == account and same_call):
        raise BackendError("session_required", REFUSED)
    return SessionAccount(account_id, number, mobile)
