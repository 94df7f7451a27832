"""Accounts and tokens, for admins: find an account by number or status, see its mobile,
terms, lockout and tokens, lock or unlock it, and start a FortiToken Mobile enrolment (its QR
code shown once). Changes go through backend/admin/, as `ivrs admin` does, and are audited.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

import formats
from backend import admin, audit
from backend.console.auth import allow, signed_in
from backend.console.pages import PREFIX, database, render
from backend.database import Database
from backend.models import Account, TermsAcceptance
from otp.enrolment import qr_png

routes = web.RouteTableDef()

STATUSES = ("active", "locked", "disabled")
PAGE_SIZE = 50
NUMBER = r"{number:\d{8}}"


@dataclass(frozen=True)
class AccountDetails:
    account: Account
    locked_now: bool
    acceptances: list[TermsAcceptance]


async def find_accounts(
    db: Database, status: str, after: str | None = None, limit: int = PAGE_SIZE
) -> list[Account]:
    """Accounts of a status, by number; "locked" also finds lockouts still running."""
    query = select(Account).order_by(Account.number).limit(limit)
    if status == "locked":
        query = query.where(or_(Account.status == "locked", Account.locked_until > db.now()))
    elif status:
        query = query.where(Account.status == status)
    if after:
        query = query.where(Account.number > after)
    async with db.sessions() as session:
        return list(await session.scalars(query))


async def account_details(db: Database, number: str) -> AccountDetails | None:
    async with db.sessions() as session:
        account = await session.scalar(
            select(Account).where(Account.number == number).options(selectinload(Account.tokens))
        )
        if account is None:
            return None
        acceptances = list(
            await session.scalars(
                select(TermsAcceptance)
                .where(TermsAcceptance.account_id == account.id)
                .order_by(TermsAcceptance.accepted_at)
            )
        )
    now = db.now()
    locked_now = account.status != "active" or bool(
        account.locked_until and account.locked_until > now
    )
    return AccountDetails(account, locked_now, acceptances)


@routes.get(f"{PREFIX}/accounts")
@allow("accounts")
async def accounts_page(request: web.Request) -> web.Response:
    number = request.query.get("number", "").strip()
    status = request.query.get("status", "")
    problem = None
    if number:
        if formats.is_account_number(number):
            raise web.HTTPFound(f"{PREFIX}/accounts/{number}")
        problem = f"An account number has {formats.ACCOUNT_DIGITS} digits."
    if status not in ("", *STATUSES):
        problem, status = "Choose a status from the list.", ""
    after = request.query.get("after", "")
    accounts = await find_accounts(database(request), status, after if after.isdigit() else None)
    return render(
        request,
        "accounts.html",
        {
            "accounts": accounts if status else [],
            "status": status,
            "statuses": STATUSES,
            "number": number,
            "problem": problem,
            "more": len(accounts) == PAGE_SIZE,
        },
        status=400 if problem else 200,
    )


@routes.get(f"{PREFIX}/accounts/{NUMBER}")
@allow("accounts")
async def account_page(request: web.Request) -> web.Response:
    return await _account_page(request)


async def _account_page(
    request: web.Request, notice: str | None = None, enrolment: dict[str, str] | None = None
) -> web.Response:
    number = request.match_info["number"]
    details = await account_details(database(request), number)
    if details is None:
        raise web.HTTPNotFound(text=f"There is no account {number}.")
    return render(
        request,
        "account.html",
        {
            "details": details,
            "account": details.account,
            "tokens": sorted(details.account.tokens, key=lambda t: t.id, reverse=True),
            "notice": notice or NOTICES.get(request.query.get("notice", "")),
            "enrolment": enrolment,
            "now": database(request).now(),
        },
    )


NOTICES = {
    "locked": "The account is locked: every login is refused until it is unlocked.",
    "unlocked": "The account is unlocked and its failure count cleared.",
}


@routes.post(PREFIX + "/accounts/" + NUMBER + "/{change:lock|unlock}")
@allow("accounts")
async def lock_or_unlock(request: web.Request) -> web.StreamResponse:
    me = signed_in(request)
    number, change = request.match_info["number"], request.match_info["change"]
    db = database(request)
    by = audit.Actor(me.actor, request.remote)
    try:
        await (admin.lock if change == "lock" else admin.unlock)(db, number, by=by)
    except admin.AdminError as e:
        raise web.HTTPConflict(text=str(e).capitalize() + ".") from None
    raise web.HTTPFound(f"{PREFIX}/accounts/{number}?notice={change}ed")


@routes.post(PREFIX + "/accounts/" + NUMBER + "/enrol")
@allow("accounts")
async def enrol(request: web.Request) -> web.Response:
    """A new FortiToken Mobile token: the QR code and URI are in this response only (never
    stored, never cached); the old token works until the first login with the new one."""
    me = signed_in(request)
    number = request.match_info["number"]
    form = await request.post()
    try:
        digits, period = int(str(form.get("digits", "6"))), int(str(form.get("period", "30")))
    except ValueError:
        raise web.HTTPBadRequest(text="Digits are 6 or 8; the period is 30 or 60 s.") from None
    db = database(request)
    by = audit.Actor(me.actor, request.remote)
    try:
        enrolment = await admin.enrol_mobile_token(db, number, digits=digits, period=period, by=by)
    except admin.AdminError as e:
        raise web.HTTPBadRequest(text=str(e).capitalize() + ".") from None
    qr = "data:image/png;base64," + base64.b64encode(qr_png(enrolment.uri, scale=6)).decode()
    return await _account_page(
        request,
        notice=f"FortiToken Mobile token {enrolment.serial} is pending until its first login.",
        enrolment={"serial": enrolment.serial, "qr": qr, "uri": enrolment.uri},
    )
