"""The JSON API under /v1, as `backend/openapi.yaml` describes it.

Handlers parse the request, call one service function and shape the reply; the rules live in
`calls`, `login`, `registration` (first call: mobile and terms) and `bundling`. Every error
leaves as `{"error": {"code", "message"}}`, and no error message carries request input (a
password or an SMS code must never come back in an echo).
"""

from __future__ import annotations

import hmac
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from backend import bundling, call_logs, login, registration, sessions
from backend.bodies import (
    MAX_INTEGER,
    NUL_REFUSED,
    BundleSubmission,
    CallEnding,
    CallEvents,
    CallOpening,
    CallOpenings,
    HangUp,
    LoginAttempt,
    MobileRegistration,
    MobileVerification,
    TermsAcceptanceIn,
    UnbundleRequest,
    read_body,
)
from backend.database import Database
from backend.errors import BackendError
from backend.models import Bundle, Call
from backend.settings import BackendSettings
from backend.sms import SmsSender

log = structlog.get_logger(__name__)

SETTINGS = web.AppKey("settings", BackendSettings)
DATABASE = web.AppKey("database", Database)
SMS_SENDER: web.AppKey[SmsSender] = web.AppKey("sms_sender")

routes = web.RouteTableDef()

CALL_ID = r"{call_id:[0-9]{1,18}}"
MAX_IDEMPOTENCY_KEY = 128


# --- middlewares ----------------------------------------------------------------------------


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error in the Error shape: refusals, aiohttp's own 404/405, and crashes (logged here
    with the traceback, answered with a bare 500 that echoes nothing)."""
    try:
        return await handler(request)
    except BackendError as e:
        return web.json_response(e.body(), status=e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "invalid_request")
        headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        error = BackendError(code, e.reason, status=e.status)
        return web.json_response(error.body(), status=e.status, headers=headers)
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        error = BackendError("internal", "Internal error.")
        return web.json_response(error.body(), status=500)


@web.middleware
async def refuse_nul_characters(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A NUL in the path or the query is refused like one in a body (see has_nul). It can come
    only percent-encoded (HTTP refuses a raw one): the raw path is searched, not decoded."""
    if request.path.startswith("/v1/") and "%00" in request.raw_path:
        raise BackendError("invalid_request", NUL_REFUSED)
    return await handler(request)


@web.middleware
async def require_api_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") and request.path != "/v1/health":
        expected = f"Bearer {request.app[SETTINGS].api_token}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no token guessing by timing
            raise BackendError("unauthorized", "A valid API token is required.")
    return await handler(request)


# --- handlers -------------------------------------------------------------------------------


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.post("/v1/calls")
async def open_call(request: web.Request) -> web.Response:
    """The call log opened, answered with what the call's first prompts need: the caller
    number's remembered language and whether the service is suspended (one request, not three)."""
    body = await read_body(request, CallOpening)
    db = request.app[DATABASE]
    opened = await call_logs.open_call(db, **body.model_dump(), with_last_language=True)
    reply = _opened_json(opened, _service_status(request))
    return web.json_response(reply, status=201 if opened.created else 200)


@routes.post("/v1/calls/batch")
async def open_calls(request: web.Request) -> web.Response:
    """Many calls opened at once (a burst of callers, whose openings the IVR sends together),
    each answered as `POST /v1/calls` answers, in the order given."""
    body = await read_body(request, CallOpenings)
    db = request.app[DATABASE]
    opened = await call_logs.open_calls(db, [c.model_dump() for c in body.calls])
    service = _service_status(request)
    return web.json_response({"calls": [_opened_json(one, service) for one in opened]})


def _opened_json(opened: call_logs.Opened, service: dict[str, Any]) -> dict[str, Any]:
    return {"call_id": opened.call.id, "language": opened.last_language, "service": service}


@routes.post(f"/v1/calls/{CALL_ID}/events")
async def add_call_events(request: web.Request) -> web.Response:
    body = await read_body(request, CallEvents)
    accepted = await call_logs.add_events(request.app[DATABASE], _call_id(request), body.events)
    return web.json_response({"accepted": accepted})


@routes.post(f"/v1/calls/{CALL_ID}/end")
async def end_call(request: web.Request) -> web.Response:
    body = await read_body(request, CallEnding)
    call = await call_logs.end_call(
        request.app[DATABASE],
        _call_id(request),
        body.outcome,
        body.last_stage,
        body.account,
        language=body.language,
        events=body.events,
        reply=not _minimal(request),
    )
    if call is None:
        return web.Response(status=204, headers={"Preference-Applied": "return=minimal"})
    return web.json_response(_call_json(call))


@routes.post("/v1/calls/hangup")
async def hang_up(request: web.Request) -> web.Response:
    body = await read_body(request, HangUp)
    call = await call_logs.hang_up(request.app[DATABASE], body.uniqueid, body.cause)
    if _minimal(request):  # the dialplan's handler: a call log may not fit Asterisk's buffer
        return web.Response(status=204, headers={"Preference-Applied": "return=minimal"})
    return web.json_response(_call_json(call))


@routes.get(f"/v1/calls/{CALL_ID}")
async def get_call(request: web.Request) -> web.Response:
    call = await call_logs.get_call(request.app[DATABASE], _call_id(request))
    return web.json_response(_call_json(call))


@routes.post("/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    body = await read_body(request, LoginAttempt)
    logged_in = await login.login(
        request.app[DATABASE],
        body.account,
        body.password.get_secret_value(),
        body.token_code.get_secret_value(),
        call_id=body.call_id,
        caller_id=body.caller_id,
    )
    account = logged_in.account
    state = registration.activation(account, request.app[SETTINGS].terms_version)
    return web.json_response(
        {
            "session": {
                "token": logged_in.session_token,
                "expires_at": logged_in.session_expires_at.isoformat(),
            },
            "account": {
                "number": account.number,
                "type": account.type,
                "needs_activation": state.needs_activation,
                "mobile": account.mobile,
                "mobile_registered": state.mobile_registered,
                "terms_accepted": state.terms_accepted,
                "recent_vehicles": logged_in.recent_vehicles,
            },
        }
    )


def _service_status(request: web.Request) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    start, end = settings.suspended_from, settings.suspended_until
    return {
        "suspended": settings.suspended(settings.clock()),
        "from": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
    }


@routes.post("/v1/accounts/{number}/mobile")
async def send_mobile_code(request: web.Request) -> web.Response:
    body = await read_body(request, MobileRegistration)
    codes_left = await registration.send_code(
        request.app[DATABASE], request.match_info["number"], body.mobile, body.call_id
    )
    return web.json_response({"codes_left": codes_left}, status=202)


@routes.post("/v1/accounts/{number}/mobile/verify")
async def verify_mobile(request: web.Request) -> web.Response:
    body = await read_body(request, MobileVerification)
    mobile = await registration.verify_code(
        request.app[DATABASE],
        request.match_info["number"],
        body.code.get_secret_value(),
        body.call_id,
    )
    return web.json_response({"mobile": mobile})


@routes.get("/v1/terms")
async def current_terms(request: web.Request) -> web.Response:
    return web.json_response({"version": request.app[SETTINGS].terms_version})


@routes.post("/v1/accounts/{number}/terms")
async def accept_terms(request: web.Request) -> web.Response:
    body = await read_body(request, TermsAcceptanceIn)
    acceptance = await registration.accept_terms(
        request.app[DATABASE], request.match_info["number"], body.version, body.call_id
    )
    return web.json_response(
        {
            "terms_version_accepted": acceptance.version,
            "accepted_at": acceptance.accepted_at.isoformat(),
            "call_id": acceptance.call_id,
        }
    )


@routes.get("/v1/cargo/{number}")
async def check_cargo(request: web.Request) -> web.Response:
    check = await bundling.check_cargo(request.app[DATABASE], request.match_info["number"])
    return web.json_response({"number": check.number, "kind": check.kind, "ccrns": check.ccrns})


@routes.post("/v1/bundles")
async def create_bundle(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    body = await read_body(request, BundleSubmission)
    account = await _require_session(request, body.account, body.call_id)
    bundle, created = await bundling.create_bundle(
        request.app[DATABASE], account, body.vehicle_mark, body.numbers, key, body.call_id
    )
    return web.json_response(_bundle_json(bundle), status=201 if created else 200)


@routes.get("/v1/bundles")
async def list_bundles(request: web.Request) -> web.Response:
    account = request.query.get("account")
    if not account:
        raise BackendError("invalid_request", "The account query parameter is required.")
    holder = await _require_session(request, account, None, any_call=True)
    bundles = await bundling.list_bundles(
        request.app[DATABASE], holder.id, request.query.get("vehicle_mark")
    )
    return web.json_response({"bundles": [_bundle_json(b) for b in bundles]})


@routes.post("/v1/unbundle")
async def unbundle(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    body = await read_body(request, UnbundleRequest)
    account = await _require_session(request, body.account, body.call_id)
    cancellation = await bundling.unbundle(
        request.app[DATABASE], account, body.vehicle_mark, body.ccrn, key, body.call_id
    )
    return web.json_response(
        {"cancelled": cancellation.cancelled, "vehicle_mark": cancellation.vehicle_mark}
    )


# --- replies --------------------------------------------------------------------------------


def _idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BackendError(
            "invalid_request",
            f"An Idempotency-Key header (1 to {MAX_IDEMPOTENCY_KEY} characters) is required.",
            status=400,
        )
    return key


async def _require_session(
    request: web.Request, account: str, call_id: int | None, any_call: bool = False
) -> sessions.SessionAccount:
    """The account acts only through its login session (backend/sessions.py)."""
    token = request.headers.get(sessions.HEADER)
    return await sessions.require(request.app[DATABASE], token, account, call_id, any_call)


def _minimal(request: web.Request) -> bool:
    """The client asked for no reply body (RFC 7240 `Prefer: return=minimal`): the IVR ends
    every call and never reads the call back, which would cost a query of all its events."""
    preferences = request.headers.get("Prefer", "").replace(" ", "").lower().split(",")
    return "return=minimal" in preferences


def _call_id(request: web.Request) -> int:
    call_id = int(request.match_info["call_id"])
    if call_id > MAX_INTEGER:
        raise BackendError("call_unknown", f"no call {call_id}")
    return call_id


def _call_json(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "uniqueid": call.uniqueid,
        "hotline": call.hotline,
        "caller_id": call.caller_id,
        "language": call.language,
        "started_at": call.started_at.isoformat(),
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "outcome": call.outcome,
        "last_stage": call.last_stage,
        "account": call.account_number,
        "events": [
            {
                "at": e.at.isoformat(),
                "kind": e.kind,
                "name": e.name,
                "detail": e.detail,
                "duration_ms": e.duration_ms,
            }
            for e in call.events
        ],
    }


def _bundle_json(bundle: Bundle) -> dict[str, Any]:
    return {
        "reference": bundle.reference,
        "vehicle_mark": bundle.vehicle_mark,
        "account": bundle.account.number,
        "ccrns": bundling.active_ccrns(bundle),
        "created_at": bundle.created_at.isoformat(),
        "earliest_crossing": bundle.earliest_crossing.isoformat(),
        "status": bundle.status,
    }
