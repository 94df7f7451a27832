"""Console sign-in and sessions, CSRF protection, and the role check of each page.

- Passwords are Argon2 (backend/security.py), checked off the event loop; an unknown name
  takes as long to refuse as a wrong password. Every sign-in, failed or not, is audited
  (never with the password); five failures for a name within 15 minutes refuse that name for
  15 minutes, however many sign-ins arrive together (backend/limits.py).
- A session is a random token in an HttpOnly, SameSite=Strict cookie (Secure, with the
  `__Host-` prefix, unless plain HTTP is allowed for a loopback demo); the database keeps only
  its SHA-256. Sessions end after `console_idle_timeout` without a request and after
  `console_session_lifetime` whatever happens, and at sign-out.
- Every form carries the session's CSRF token (the sign-in form, before there is a session, a
  token also set as a cookie); a POST without the right one is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import wraps
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from backend import audit, limits
from backend.admin import AdminError
from backend.console.pages import PREFIX, database, render, settings
from backend.console.roles import ROLES, SIGNED_IN, Permission, SignedIn
from backend.database import Database
from backend.models import ConsoleSession, Supervisor, SupervisorRole
from backend.settings import BackendSettings

routes = web.RouteTableDef()

SIGN_IN_PATH = f"{PREFIX}/sign-in"
CSRF_FIELD = "csrf_token"
SECURE_COOKIE = "__Host-ivrs_console"  # the prefix makes browsers insist on Secure and Path=/
PLAIN_COOKIE = "ivrs_console"
# The sign-in form's CSRF token (double submit, the token signed by the server: a pair the
# client made up is refused).
SECURE_SIGN_IN_COOKIE = "__Host-ivrs_console_sign_in"
PLAIN_SIGN_IN_COOKIE = "ivrs_console_sign_in"
LAST_SEEN_STEP = timedelta(minutes=1)  # last_seen_at is written at most this often
# Five failed sign-ins for a name within 15 minutes refuse it for 15 minutes; each attempt takes
# its slot before the password is checked, so attempts sent together count too.
SIGN_IN_LIMIT = limits.Limit(5, timedelta(minutes=15), timedelta(minutes=15))
MIN_PASSWORD = 12
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_FORM_FIELD = 256  # no sign-in field is longer; a longer one is refused unread
EXPIRED = web.RequestKey("console_session_expired", bool)  # the sign-in page says so


# --- supervisors ------------------------------------------------------------------------------


async def create_supervisor(
    db: Database,
    name: str,
    role: SupervisorRole,
    password: str,
    extension: str | None = None,
    by: audit.Actor | None = None,
) -> None:
    """A new console user (`ivrs admin create-supervisor`); `by`: who creates it, audited."""
    if not NAME.fullmatch(name):
        raise AdminError("a supervisor's name is 1 to 64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise AdminError(f"the role is one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"a supervisor's password has at least {MIN_PASSWORD} characters")
    if extension is not None and not re.fullmatch(r"[0-9*#]{1,32}", extension):
        raise AdminError("an extension is the digits dialled to reach the supervisor's phone")
    supervisor = Supervisor(
        name=name,
        role=role,
        password_hash=await db.passwords.hash(password),
        extension=extension,
        created_at=db.now(),
    )
    try:
        async with db.sessions.begin() as session:
            session.add(supervisor)
            target = f"supervisor:{name}"
            audit.changed(session, db, by, "supervisor_created", target, {"role": role})
    except IntegrityError:
        raise AdminError(f"supervisor {name} already exists") from None


# --- sessions ---------------------------------------------------------------------------------


def cookie_name(config: BackendSettings) -> str:
    return PLAIN_COOKIE if config.console_plain_http else SECURE_COOKIE


def sign_in_cookie(config: BackendSettings) -> str:
    return PLAIN_SIGN_IN_COOKIE if config.console_plain_http else SECURE_SIGN_IN_COOKIE


def _form_signature(config: BackendSettings, nonce: str) -> str:
    key = hmac.new(config.secret_key, b"ivrs console sign-in v1", hashlib.sha256).digest()
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def new_form_token(config: BackendSettings) -> str:
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_form_signature(config, nonce)}"


def _form_token_ok(config: BackendSettings, token: object) -> bool:
    if not isinstance(token, str) or len(token) > 128:
        return False
    nonce, _, signature = token.partition(".")
    return _same(signature, _form_signature(config, nonce))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expired(row: ConsoleSession, now: datetime, config: BackendSettings) -> bool:
    return (
        now - row.last_seen_at >= config.console_idle_timeout
        or now - row.created_at >= config.console_session_lifetime
    )


async def _signed_in(request: web.Request) -> SignedIn | None:
    """The session of the request's cookie, if it is live; an expired one is ended here."""
    config = settings(request)
    token = request.cookies.get(cookie_name(config))
    if not token or len(token) > 128:
        return None
    db = database(request)
    now = db.now()
    hashed = token_hash(token)
    async with db.sessions() as session:
        found = await session.execute(
            select(ConsoleSession, Supervisor)
            .join(Supervisor, ConsoleSession.supervisor_id == Supervisor.id)
            .where(ConsoleSession.token_hash == hashed, Supervisor.disabled.is_(False))
        )
        pair = found.first()
    if pair is None:
        return None
    row, supervisor = pair
    if _expired(row, now, config):
        async with db.sessions.begin() as session:
            await session.execute(delete(ConsoleSession).where(ConsoleSession.id == row.id))
        request[EXPIRED] = True
        return None
    if now - row.last_seen_at >= LAST_SEEN_STEP:
        async with db.sessions.begin() as session:
            await session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.id == row.id)
                .values(last_seen_at=now)
                .execution_options(synchronize_session=False)
            )
    return SignedIn(
        session_id=row.id,
        token_hash=hashed,
        supervisor_id=supervisor.id,
        name=supervisor.name,
        role=supervisor.role,
        extension=supervisor.extension,
        csrf_token=row.csrf_token,
    )


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is signed in; and no POST without that session's CSRF token (sign-in checks its
    own)."""
    if request.path.startswith(f"{PREFIX}/static/"):
        return await handler(request)
    me = await _signed_in(request)
    request[SIGNED_IN] = me
    if request.method == "POST" and request.path != SIGN_IN_PATH:
        if me is None:
            raise _to_sign_in(request)
        form = await request.post()
        if not _same(form.get(CSRF_FIELD), me.csrf_token):
            raise web.HTTPForbidden(text=CSRF_REFUSED)
    return await handler(request)


CSRF_REFUSED = (
    "This form did not carry the console's security token (it may be older than your session)."
    " Go back, reload the page and try again."
)


def _same(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _to_sign_in(request: web.Request) -> web.HTTPFound:
    target = request.path_qs if request.method == "GET" else f"{PREFIX}/calls"
    expired = "&expired=1" if request.get(EXPIRED) else ""
    return web.HTTPFound(f"{SIGN_IN_PATH}?next={quote(target, safe='')}{expired}")


RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allow(permission: Permission) -> Callable[[RouteHandler], RouteHandler]:
    """The page needs a signed-in supervisor whose role has `permission`: otherwise the
    sign-in page (not signed in) or 403 (signed in, wrong role)."""

    def decorate(handler: RouteHandler) -> RouteHandler:
        @wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            me = request.get(SIGNED_IN)
            if me is None:
                raise _to_sign_in(request)
            if not me.may(permission):
                raise web.HTTPForbidden(text=f"Your role ({me.role}) does not open this page.")
            return await handler(request)

        return checked

    return decorate


def signed_in(request: web.Request) -> SignedIn:
    """The supervisor of a page behind `allow`."""
    me = request[SIGNED_IN]
    assert me is not None, "only pages behind allow() ask"
    return me


# --- pages ------------------------------------------------------------------------------------


@routes.get(f"{PREFIX}/")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/calls")


@routes.get(SIGN_IN_PATH)
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if request.get(SIGNED_IN) is not None:
        raise web.HTTPFound(_next(request.query.get("next")))
    return _sign_in_page(request, expired=request.query.get("expired") == "1")


def _sign_in_page(
    request: web.Request, error: str | None = None, expired: bool = False, status: int = 200
) -> web.Response:
    form_token = new_form_token(settings(request))
    response = render(
        request,
        "sign_in.html",
        {
            "form_token": form_token,
            "next": _next(request.query.get("next")),
            "error": error,
            "expired": expired,
        },
        status,
    )
    _set_cookie(response, settings(request), sign_in_cookie(settings(request)), form_token)
    return response


@routes.post(SIGN_IN_PATH)
async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    config = settings(request)
    cookie = request.cookies.get(sign_in_cookie(config), "")
    if not _same(form.get(CSRF_FIELD), cookie) or not _form_token_ok(config, cookie):
        raise web.HTTPForbidden(text=CSRF_REFUSED)
    name, password = form.get("name"), form.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return _sign_in_page(request, "Give your name and password.", status=400)
    if len(name) > MAX_FORM_FIELD or len(password) > MAX_FORM_FIELD:
        return _sign_in_page(request, "That name or password is too long.", status=400)
    name = name.strip()
    db = database(request)
    source = request.remote
    target = f"supervisor:{name}"
    slot = _sign_in_key(name)
    if not await limits.reserve(db, slot, SIGN_IN_LIMIT):
        await audit.write(
            db,
            audit.UNKNOWN_ACTOR,
            "sign_in_refused",
            target,
            {"reason": "too_many_failures"},
            source=source,
        )
        message = "Too many failed sign-ins for this name: try again in 15 minutes."
        return _sign_in_page(request, message, status=429)
    async with db.sessions() as session:
        supervisor = await session.scalar(select(Supervisor).where(Supervisor.name == name))
    good = await db.passwords.verify(supervisor.password_hash if supervisor else None, password)
    failed = supervisor is None or not good or supervisor.disabled
    await limits.settle(db, slot, SIGN_IN_LIMIT, failed=failed)
    if supervisor is None or not good or supervisor.disabled:
        reason = "unknown_name" if supervisor is None else "disabled" if good else "wrong_password"
        await audit.write(
            db, audit.UNKNOWN_ACTOR, "sign_in_failed", target, {"reason": reason}, source=source
        )
        return _sign_in_page(request, "The name or password is not correct.", status=401)

    token = secrets.token_urlsafe(32)
    now = db.now()
    async with db.sessions.begin() as session:
        await session.execute(  # housekeeping: this supervisor's expired sessions
            delete(ConsoleSession).where(
                ConsoleSession.supervisor_id == supervisor.id,
                or_(
                    ConsoleSession.last_seen_at <= now - config.console_idle_timeout,
                    ConsoleSession.created_at <= now - config.console_session_lifetime,
                ),
            )
        )
        session.add(
            ConsoleSession(
                token_hash=token_hash(token),
                supervisor_id=supervisor.id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
            )
        )
        audit.add(
            session,
            db,
            f"supervisor:{supervisor.name}",
            "signed_in",
            target,
            {"role": supervisor.role},
            source=source,
        )
    response = web.HTTPFound(_next(form.get("next")))
    _set_cookie(response, config, cookie_name(config), token)
    response.del_cookie(sign_in_cookie(config), path="/")
    raise response


@routes.post(f"{PREFIX}/sign-out")
async def sign_out(request: web.Request) -> web.StreamResponse:
    me = signed_in(request)
    db = database(request)
    async with db.sessions.begin() as session:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.id == me.session_id))
        audit.add(session, db, me.actor, "signed_out", me.actor, source=request.remote)
    response = web.HTTPFound(SIGN_IN_PATH)
    response.del_cookie(cookie_name(settings(request)), path="/")
    raise response


def _sign_in_key(name: str) -> str:
    """The name's attempt-limit key (backend/limits.py); a long name is cut, which only
    makes names share a limit."""
    return f"sign-in:{name}"[: limits.MAX_KEY]


def _next(value: object) -> str:
    """Where to go after signing in: a console page only (no open redirect)."""
    if isinstance(value, str) and value.startswith(f"{PREFIX}/") and "//" not in value:
        if not value.startswith(SIGN_IN_PATH) and "\\" not in value:
            return value
    return f"{PREFIX}/calls"


def _set_cookie(
    response: web.StreamResponse, config: BackendSettings, name: str, value: str
) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=not config.console_plain_http,
    )
