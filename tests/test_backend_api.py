"""The backend API, end to end: the real server on a free port, a real HTTP client, a temporary
SQLite file, an injected clock (no sleeps), and every reply checked against openapi.yaml."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy
import yarl
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import formats
import otp
from backend import admin, call_logs, sms
from backend.api import DATABASE
from backend.app import start_backend
from backend.database import Database
from backend.models import Bundle, BundleItem, LoginSession, SmsOutbox, Token
from backend.settings import BackendSettings
from tests.support.api import (
    ACCOUNT,
    API_TOKEN,
    MARK,
    MOBILE,
    PASSWORD,
    START,
    Api,
    Clock,
    Service,
    login_session,
    open_call,
)
from tests.support.databases import DATABASES
from tests.support.statements import backend_engines, sql_seen


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    """Every backend API test runs on SQLite and on PostgreSQL (tests/support/databases.py)."""
    return str(request.param)


def backend_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "IVRS_DATABASE_URL": database_url,
        "IVRS_API_TOKEN": API_TOKEN,
        "IVRS_ARGON2_PROFILE": "test",
        "IVRS_SECRET_KEY": Fernet.generate_key().decode(),
        "IVRS_RECORDINGS_DIR": str(tmp_path / "recordings"),
    }


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    clock = Clock(START)
    settings = replace(BackendSettings.from_env(backend_env(tmp_path, database_url)), clock=clock)
    running = await start_backend(settings)
    try:
        async with aiohttp.ClientSession() as http:
            db = running.app[DATABASE]
            yield Service(Api(http, running.url, db), db, clock)
    finally:
        await running.stop()


async def count_bundles(db: Database) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Bundle)) or 0


# --- health, auth, error shapes -----------------------------------------------------------


async def test_requests_at_once_share_the_database_connections_it_keeps(
    tmp_path: Path, database_url: str
) -> None:
    """IVRS_DATABASE_CONNECTIONS and no more on each engine (more at once only contend in the
    database): 40 reads at once on 2 connections all answered, queued for them (writes on
    SQLite take their turns anyway). PostgreSQL's reads go through its autocommit engine."""
    env = backend_env(tmp_path, database_url) | {"IVRS_DATABASE_CONNECTIONS": "2"}
    running = await start_backend(BackendSettings.from_env(env))
    engines = backend_engines(running.app[DATABASE])
    taken = [0] * len(engines)
    peaks = [0] * len(engines)

    def counting(k: int, step: int) -> Callable[..., None]:
        def count(*_args: Any) -> None:
            taken[k] += step
            peaks[k] = max(peaks[k], taken[k])

        return count

    listeners = [
        (engine.pool, name, counting(k, step))
        for k, engine in enumerate(engines)
        for name, step in (("checkout", 1), ("checkin", -1))
    ]
    for target, name, listener in listeners:
        sqlalchemy.event.listen(target, name, listener)
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(http, running.url, running.app[DATABASE])
            call_id = (await open_call(api)).body["call_id"]
            reads = [api.get(f"/v1/calls/{call_id}") for _ in range(40)]
            replies = await asyncio.gather(*reads)
    finally:
        await running.stop()
    assert [r.status for r in replies] == [200] * 40
    assert peaks[-1] == 2 and max(peaks) == 2


async def test_health_needs_no_token(service: Service) -> None:
    reply = await service.api.get("/v1/health", token=None)
    assert (reply.status, reply.body) == (200, {"status": "ok"})


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_requests_without_the_api_token_are_refused(
    service: Service, token: str | None
) -> None:
    reply = await service.api.get("/v1/bundles", params={"account": ACCOUNT}, token=token)
    assert (reply.status, reply.error_code()) == (401, "unauthorized")


async def test_unknown_route_answers_not_found_as_error(service: Service) -> None:
    reply = await service.api.get("/v1/nowhere")
    assert (reply.status, reply.error_code()) == (404, "not_found")


async def test_wrong_method_answers_method_not_allowed_as_error(service: Service) -> None:
    reply = await service.api.request("DELETE", "/v1/bundles")
    assert (reply.status, reply.error_code()) == (405, "method_not_allowed")


async def test_malformed_json_is_an_invalid_request(service: Service) -> None:
    reply = await service.api.request("POST", "/v1/calls", raw=b'{"uniqueid": ')
    assert (reply.status, reply.error_code()) == (400, "invalid_request")


async def test_missing_field_is_an_invalid_request(service: Service) -> None:
    reply = await service.api.post("/v1/calls", {"uniqueid": "1700000000.1"})
    assert (reply.status, reply.error_code()) == (422, "invalid_request")
    assert "hotline" in reply.body["error"]["message"]


async def test_a_nul_anywhere_in_a_body_is_refused_and_backslash_u_text_is_not(
    service: Service,
) -> None:
    opening = {"uniqueid": "1700000000.9", "hotline": "39023333", "channel": None}
    for raw, status in (
        (json.dumps({**opening, "caller_id": "9123\u00004567"}), 422),  # the \u0000 escape
        (json.dumps({**opening, "caller_id": "9123\\u00004567"}), 201),  # a backslash, then text
    ):
        reply = await service.api.request("POST", "/v1/calls", raw=raw.encode())
        assert reply.status == status, raw
        if status == 422:
            assert "NUL" in reply.body["error"]["message"]


async def test_a_nul_in_a_path_or_a_query_is_refused(service: Service) -> None:
    """Percent-encoded, as it must be: HTTP refuses a raw one (400, before any handler)."""
    session = {"Login-Session": "not-a-session"}  # refused later than the NUL, if at all
    for path, params in (
        ("/v1/cargo/1234%005678", None),
        ("/v1/bundles", {"account": "1234\x005678"}),
        ("/v1/bundles", {"account": "12345678", "vehicle_mark": "\x00"}),
    ):
        reply = await service.api.request("GET", path, params=params, headers=session)
        assert (reply.status, reply.error_code()) == (422, "invalid_request"), (path, params)
        assert "NUL" in reply.body["error"]["message"]
    address = yarl.URL(service.api.base_url)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"GET /v1/cargo/1234\x005678 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readline()).split()[1] == b"400"
    writer.close()


async def test_unexpected_failure_answers_internal_without_echo(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom 123456")

    monkeypatch.setattr("backend.login.login", broken)
    reply = await service.api.login("123456", password="987654")
    assert (reply.status, reply.error_code()) == (500, "internal")
    assert "987654" not in json.dumps(reply.body) and "boom" not in json.dumps(reply.body)


# --- call logs -----------------------------------------------------------------------------


async def test_opening_a_call_twice_gives_the_same_call(service: Service) -> None:
    first = await open_call(service.api)
    again = await open_call(service.api)
    assert first.status == 201 and again.status == 200
    assert again.body["call_id"] == first.body["call_id"]


async def test_openings_sent_together_are_each_answered_as_alone(service: Service) -> None:
    """A burst's openings in one request: two statements for all, each call its own id and its
    number's last language, in the order given; a UNIQUEID opened before gives its call."""
    earlier = (await open_call(service.api, "1700000000.1")).body["call_id"]
    ended = {"outcome": "completed", "last_stage": "menu", "language": "zh_CN"}
    await service.api.post(f"/v1/calls/{earlier}/end", ended)
    calls = [
        {"uniqueid": f"1700000001.{n}", "hotline": "39023333", "caller_id": number}
        for n, number in enumerate(["91234567", None, "98765432", "91234567"])
    ]
    with sql_seen(service.db) as together:
        reply = await service.api.post("/v1/calls/batch", {"calls": calls})
    assert reply.status == 200
    assert together.statements == ["INSERT calls", "SELECT calls"]
    answers = reply.body["calls"]
    assert [a["language"] for a in answers] == ["zh_CN", None, None, "zh_CN"]
    assert all(a["service"]["suspended"] is False for a in answers)
    ids = [a["call_id"] for a in answers]
    assert len(set(ids) | {earlier}) == 5
    for call, call_id in zip(calls, ids, strict=True):
        stored = (await service.api.get(f"/v1/calls/{call_id}")).body
        assert (stored["uniqueid"], stored["caller_id"]) == (call["uniqueid"], call["caller_id"])

    again = await service.api.post(
        "/v1/calls/batch", {"calls": [calls[2], {**calls[0], "uniqueid": "1700000002.1"}]}
    )
    assert again.status == 200
    assert again.body["calls"][0]["call_id"] == ids[2]
    assert again.body["calls"][1]["call_id"] not in {*ids, earlier}
    assert again.body["calls"][1]["language"] == "zh_CN"


async def test_a_batch_of_openings_is_refused_whole_when_one_is_invalid(service: Service) -> None:
    calls = [{"uniqueid": "1700000001.1", "hotline": "39023333"}, {"uniqueid": "", "hotline": "x"}]
    reply = await service.api.post("/v1/calls/batch", {"calls": calls})
    assert (reply.status, reply.error_code()) == (422, "invalid_request")
    assert (await service.api.post("/v1/calls/batch", {"calls": []})).status == 422
    assert (await open_call(service.api, "1700000001.1")).status == 201  # nothing was opened


@pytest.mark.parametrize("sent_with", ["events", "end"])
async def test_secrets_in_event_details_are_masked(service: Service, sent_with: str) -> None:
    """Events sent on their own or with the end (on PostgreSQL a statement of its own) are
    stored alike: masked, each with its time, kind and duration."""
    call_id = (await open_call(service.api)).body["call_id"]
    event = {"at": "2025-03-03T10:00:05.123456+08:00", "kind": "input", "duration_ms": 1200}
    events = [
        {**event, "name": "password", "detail": {"password": "246810", "length": 6}},
        {**event, "name": "token", "detail": {"token_code": "***", "length": 6}},
        {**event, "name": "nested", "detail": {"keys": [{"PIN": "1234"}], "code": 7}},
        {**event, "name": "account", "kind": "stage", "duration_ms": None, "detail": {}},
    ]
    if sent_with == "events":
        reply = await service.api.post(f"/v1/calls/{call_id}/events", {"events": events})
        assert reply.body == {"accepted": 4}
    else:
        end = {"outcome": "completed", "last_stage": "login", "account": None, "events": events}
        assert (await service.api.post(f"/v1/calls/{call_id}/end", end)).status == 200
    stored = (await service.api.get(f"/v1/calls/{call_id}")).body["events"]
    assert [e["detail"] for e in stored] == [
        {"password": "***", "length": 6},
        {"token_code": "***", "length": 6},
        {"keys": [{"PIN": "***"}], "code": "***"},
        {},
    ]
    at = "2025-03-03T02:00:05.123456+00:00"  # in UTC, to the microsecond
    assert [(e["at"], e["kind"], e["name"], e["duration_ms"]) for e in stored] == [
        (at, "input", "password", 1200),
        (at, "input", "token", 1200),
        (at, "input", "nested", 1200),
        (at, "stage", "account", None),
    ]


async def test_events_of_an_unknown_call_are_refused(service: Service) -> None:
    reply = await service.api.post("/v1/calls/999/events", {"events": []})
    assert (reply.status, reply.error_code()) == (404, "call_unknown")


async def test_the_caller_hears_the_language_chosen_in_their_last_finished_call(
    service: Service,
) -> None:
    end = {"outcome": "completed", "last_stage": "goodbye", "account": None}
    first = (await open_call(service.api, "1700000000.1")).body["call_id"]
    await service.api.post(f"/v1/calls/{first}/end", end | {"language": "zh_HK"})
    service.clock.advance(minutes=1)
    second = (await open_call(service.api, "1700000000.2")).body["call_id"]  # opened in "en"
    # The call still going does not count.
    assert await call_logs.last_language(service.db, "91234567") == "zh_HK"
    await service.api.post(f"/v1/calls/{second}/end", end)  # no choice made: "en" stays
    assert await call_logs.last_language(service.db, "91234567") == "en"
    # The opening answers it, as the new call's INSERT reads it (the new call not counted).
    third = await open_call(service.api, "1700000000.3")
    assert third.status == 201 and third.body["language"] == "en"
    assert (await open_call(service.api, "1700000000.3")).body["language"] == "en"  # a retry


async def test_the_end_of_an_unknown_call_is_refused(service: Service) -> None:
    end = {"outcome": "completed", "last_stage": "goodbye", "account": None}
    reply = await service.api.post("/v1/calls/999/end", end)
    assert (reply.status, reply.error_code()) == (404, "call_unknown")


async def test_ending_a_call_twice_keeps_the_first_end(service: Service) -> None:
    call_id = (await open_call(service.api)).body["call_id"]
    end = {"outcome": "completed", "last_stage": "goodbye", "account": ACCOUNT}
    first = await service.api.post(f"/v1/calls/{call_id}/end", end)
    service.clock.advance(minutes=1)
    again = await service.api.post(f"/v1/calls/{call_id}/end", end | {"outcome": "hangup"})
    assert first.status == again.status == 200
    assert again.body["ended_at"] == first.body["ended_at"] == START.isoformat()
    assert again.body["outcome"] == "completed"
    assert again.body["account"] == ACCOUNT


async def test_the_end_stores_the_last_events_once_and_may_skip_its_reply(
    service: Service,
) -> None:
    call_id = (await open_call(service.api)).body["call_id"]
    last = [
        {"at": "2025-03-03T10:00:05+08:00", "kind": "stage", "name": "goodbye", "detail": {}},
        {"at": "2025-03-03T10:00:06+08:00", "kind": "prompt", "name": "call.goodbye"},
    ]
    end = {"outcome": "completed", "last_stage": "goodbye", "account": None, "events": last}
    minimal = {"Prefer": "return=minimal"}
    with sql_seen(service.db) as ending:
        first = await service.api.post(f"/v1/calls/{call_id}/end", end, headers=minimal)
    # The first end writes without reading: its events came with it alone. PostgreSQL: in one
    # statement, outside a transaction.
    if service.db.engine.dialect.name == "postgresql":
        assert ending.statements == ["WITH UPDATE calls, INSERT call_events"]
        assert ending.transactions == 0
    else:
        assert ending.statements == ["UPDATE calls", "INSERT call_events"]
    with sql_seen(service.db) as retrying:
        again = await service.api.post(f"/v1/calls/{call_id}/end", end)  # a retry, reply wanted
    retried = retrying.statements
    if service.db.engine.dialect.name == "postgresql":  # the first end's statement: a no-op
        assert retried.pop(0) == "WITH UPDATE calls, INSERT call_events"
    assert retried[:2] == ["UPDATE calls", "SELECT calls"]  # which it has
    assert "INSERT call_events" not in retried
    assert (first.status, first.body) == (204, None)
    assert again.status == 200 and again.body["outcome"] == "completed"
    assert [e["name"] for e in again.body["events"]] == ["goodbye", "call.goodbye"]


async def test_the_last_events_are_stored_as_sent(service: Service) -> None:
    """Their times in UTC, their details whole: an integer beyond 64 bits too (JSON allows it;
    orjson refuses to write it, the standard library writes it: formats.json_text)."""
    call_id = (await open_call(service.api)).body["call_id"]
    detail = {"value": "1", "big": 10**30, "nested": {"list": [1, 2.5, None, True, "字"]}}
    last = [
        {"at": "2025-03-03T10:00:05.25+08:00", "kind": "input", "name": "menu", "detail": detail},
        {"at": "2025-03-03T10:00:06+08:00", "kind": "prompt", "name": "bye", "duration_ms": 900},
    ]
    end = {"outcome": "completed", "last_stage": "goodbye", "events": last}
    reply = await service.api.post(f"/v1/calls/{call_id}/end", end)
    assert reply.status == 200
    assert [(e["at"], e["detail"], e["duration_ms"]) for e in reply.body["events"]] == [
        ("2025-03-03T02:00:05.250000+00:00", detail, None),
        ("2025-03-03T02:00:06+00:00", {}, 900),
    ]


async def test_a_batch_of_events_is_one_insert(service: Service) -> None:
    """Prompts have a duration and inputs none: the ORM would insert each run of rows alike
    on its own (some sixteen statements for a call's batch)."""
    call_id = (await open_call(service.api)).body["call_id"]
    at = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
    batch = [
        {
            "at": (at + timedelta(seconds=n)).isoformat(),
            "kind": "prompt" if n % 2 else "input",
            "name": f"step{n}",
            "duration_ms": 800 if n % 2 else None,
        }
        for n in range(40)
    ]
    with sql_seen(service.db) as seen:
        reply = await service.api.post(f"/v1/calls/{call_id}/events", {"events": batch})
    inserts = [s for s in seen.sent if s.startswith("INSERT INTO call_events")]
    assert reply.body == {"accepted": 40} and len(inserts) == 1
    stored = (await service.api.get(f"/v1/calls/{call_id}")).body["events"]
    assert [e["duration_ms"] for e in stored[:2]] == [None, 800]


# --- login ---------------------------------------------------------------------------------


async def test_login_with_the_current_code_succeeds(service: Service) -> None:
    seed = await service.trucker()
    reply = await service.api.login(service.code(seed))
    assert reply.status == 200
    assert reply.body["account"] == {
        "number": ACCOUNT,
        "type": "trucker",
        "needs_activation": False,
        "mobile": None,
        "mobile_registered": False,
        "terms_accepted": False,
        "recent_vehicles": [],
    }
    session = reply.body["session"]  # what bundling, cancelling and enquiries need
    assert len(session["token"]) >= 43 and session["expires_at"] > service.clock().isoformat()


async def count_login_sessions(db: Database) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(LoginSession)) or 0


async def test_a_login_is_two_units_of_work_and_a_failure_opens_no_session(
    service: Service,
) -> None:
    """Before the password is checked, the slot and the lease (one unit of work) and the account
    read after them; after it, one unit of work with the outcome, the session and what the next
    prompt needs: 10 statements (2 on PostgreSQL, where the slot, the lease and the account's
    read are one, and the outcome one). A failure opens no session: 6 (4)."""
    seed = await service.trucker()
    call_id = (await open_call(service.api)).body["call_id"]
    attempt = {
        "account": ACCOUNT,
        "password": "135790",
        "token_code": service.code(seed),
        "call_id": call_id,
        "caller_id": "91234567",
    }
    postgresql = service.db.engine.dialect.name == "postgresql"
    before_check = ["INSERT caller_throttles", "UPDATE accounts", "SELECT accounts"]
    if postgresql:  # the slot, the lease and the account: one statement
        before_check = ["WITH INSERT caller_throttles, UPDATE accounts"]
    with sql_seen(service.db) as failure:
        failed = await service.api.post("/v1/sessions", attempt)
    assert (failed.status, failed.error_code()) == (401, "login_failed")
    # The slot and the lease; the account (SQLite); the outcome.
    assert failure.connections == (2 if postgresql else 3)
    assert failure.statements == [
        *before_check,
        "UPDATE accounts",  # the lease back and the failure counted
        "INSERT call_events",  # login_failed
        "UPDATE caller_throttles",  # the slot kept (a full window blocks the number)
    ]
    assert await count_login_sessions(service.db) == 0
    success = [
        "UPDATE accounts",  # the lease back and the failures forgotten
        "UPDATE tokens",  # the step used up
        "DELETE login_sessions",  # the account's expired ones
        "INSERT login_sessions",
        "INSERT call_events",  # login_ok
        "UPDATE caller_throttles",  # the slot given back
        "SELECT bundles",  # the recent vehicles
    ]
    if postgresql:  # one statement, the step first
        success = [f"WITH {', '.join([success[1], success[0], *success[2:6]])}"]
    with sql_seen(service.db) as seen:
        reply = await service.api.post("/v1/sessions", attempt | {"password": PASSWORD})
    assert reply.status == 200
    assert seen.connections == (2 if postgresql else 3)
    assert seen.statements == [*before_check, *success]
    # PostgreSQL: every statement atomic by itself, no BEGIN and COMMIT round trips.
    assert seen.transactions == (0 if postgresql else 2)
    assert await count_login_sessions(service.db) == 1
    events = (await service.api.get(f"/v1/calls/{call_id}")).body["events"]
    assert [(e["name"], e["detail"].get("reason")) for e in events] == [
        ("login_failed", "wrong_password"),
        ("login_ok", None),
    ]


async def test_a_login_deletes_its_accounts_expired_sessions_only(service: Service) -> None:
    seed = await service.trucker()
    # Each lives 30 minutes: at 0, 29, 31, 60 and 91 minutes, those of the last half hour stay.
    for minutes, left in ((0, 1), (29, 2), (2, 2), (29, 2), (31, 1)):
        service.clock.advance(minutes=minutes)
        assert (await service.api.login(service.code(seed))).status == 200
        assert await count_login_sessions(service.db) == left


async def test_login_records_an_event_without_secrets(service: Service) -> None:
    seed = await service.trucker()
    call_id = (await open_call(service.api)).body["call_id"]
    code = service.code(seed)
    attempt = {"account": ACCOUNT, "password": PASSWORD, "token_code": code, "call_id": call_id}
    assert (await service.api.post("/v1/sessions", attempt)).status == 200
    call = (await service.api.get(f"/v1/calls/{call_id}")).body
    assert [e["name"] for e in call["events"]] == ["login_ok"]
    assert PASSWORD not in json.dumps(call) and code not in json.dumps(call)


async def test_a_login_naming_an_unknown_call_succeeds_bound_to_no_call(service: Service) -> None:
    seed = await service.trucker()
    attempt = {"account": ACCOUNT, "password": PASSWORD, "token_code": service.code(seed)}
    reply = await service.api.post("/v1/sessions", attempt | {"call_id": 999_999})
    assert reply.status == 200, reply.body
    async with service.db.sessions() as session:
        assert list(await session.scalars(select(LoginSession.call_id))) == [None]


async def test_wrong_password_fails_login(service: Service) -> None:
    seed = await service.trucker()
    reply = await service.api.login(service.code(seed), password="135790")
    assert (reply.status, reply.error_code()) == (401, "login_failed")


async def test_unknown_account_fails_login_like_a_wrong_password(service: Service) -> None:
    seed = await service.trucker()
    unknown = await service.api.login(service.code(seed), account="87654321")
    wrong = await service.api.login(service.code(seed), password="135790")
    assert (unknown.status, unknown.body) == (wrong.status, wrong.body)


async def test_wrong_code_fails_login(service: Service) -> None:
    seed = await service.trucker()
    reply = await service.api.login(service.code(seed, minutes=5))
    assert (reply.status, reply.error_code()) == (401, "login_failed")


async def test_replayed_code_is_refused(service: Service) -> None:
    seed = await service.trucker()
    code = service.code(seed)
    assert (await service.api.login(code)).status == 200
    reply = await service.api.login(code)
    assert (reply.status, reply.error_code()) == (401, "login_failed")
    service.clock.advance(seconds=60)
    assert (await service.api.login(service.code(seed))).status == 200


async def test_one_code_in_concurrent_logins_lets_only_one_in(service: Service) -> None:
    seed = await service.trucker()
    code = service.code(seed)
    replies = await asyncio.gather(*(service.api.login(code) for _ in range(5)))
    assert sorted(r.status for r in replies) == [200] + [401] * 4


async def test_code_one_step_late_is_accepted_and_the_drift_remembered(service: Service) -> None:
    seed = await service.trucker(serial="FTK200000001")
    assert (await service.api.login(service.code(seed, seconds=60))).status == 200
    async with service.db.sessions() as session:
        token = await session.scalar(select(Token).where(Token.serial == "FTK200000001"))
    assert token is not None and token.drift == 1
    # Two steps later the token shows what is three steps ahead of the server: still accepted,
    # because the window is centred on the remembered drift.
    service.clock.advance(seconds=120)
    assert (await service.api.login(service.code(seed, seconds=120))).status == 200


async def test_fifth_failure_locks_the_account_for_15_minutes(service: Service) -> None:
    seed = await service.trucker()
    for _ in range(5):
        reply = await service.api.login(service.code(seed), password="135790")
        assert (reply.status, reply.error_code()) == (401, "login_failed")
    locked = await service.api.login(service.code(seed))
    assert (locked.status, locked.error_code()) == (403, "locked")
    # While locked, a wrong password still hears only login_failed.
    wrong = await service.api.login(service.code(seed), password="135790")
    assert (wrong.status, wrong.error_code()) == (401, "login_failed")
    service.clock.advance(minutes=15)
    assert (await service.api.login(service.code(seed))).status == 200


async def test_success_resets_the_failure_count(service: Service) -> None:
    seed = await service.trucker()
    for _ in range(4):
        await service.api.login(service.code(seed), password="135790")
    assert (await service.api.login(service.code(seed))).status == 200
    service.clock.advance(seconds=60)
    await service.api.login(service.code(seed), password="135790")
    assert (await service.api.login(service.code(seed))).status == 200


async def test_expired_token_is_told_only_after_the_right_password(service: Service) -> None:
    seed = await service.trucker(expires_on=date(2025, 3, 2))  # yesterday in Hong Kong
    expired = await service.api.login(service.code(seed))
    assert (expired.status, expired.error_code()) == (403, "token_expired")
    wrong = await service.api.login(service.code(seed), password="135790")
    assert (wrong.status, wrong.error_code()) == (401, "login_failed")


async def test_token_expiring_today_still_works(service: Service) -> None:
    seed = await service.trucker(expires_on=date(2025, 3, 3))
    assert (await service.api.login(service.code(seed))).status == 200


async def test_account_without_road_bundling_hears_no_service(service: Service) -> None:
    await admin.create_account(service.db, ACCOUNT, PASSWORD, type="shipper", services=())
    seed = await admin.add_token(service.db, ACCOUNT)
    reply = await service.api.login(service.code(seed))
    assert (reply.status, reply.error_code()) == (403, "no_service")
    wrong_code = await service.api.login(service.code(seed, minutes=5))
    assert wrong_code.error_code() == "login_failed"


async def test_mobile_token_with_8_digits_logs_in(service: Service) -> None:
    profile = otp.TokenProfile("mobile", digits=8, period=30)
    seed = await service.trucker(kind="mobile", digits=8, period=30)
    assert (await service.api.login(service.code(seed, profile))).status == 200


# --- cargo checks --------------------------------------------------------------------------


async def test_cargo_check_of_a_lodged_ccrn_succeeds(service: Service) -> None:
    ccrn = await admin.lodge_cargo(service.db)
    reply = await service.api.get(f"/v1/cargo/{ccrn}")
    assert (reply.status, reply.body) == (200, {"number": ccrn, "kind": "ccrn", "ccrns": [ccrn]})


async def test_cargo_check_of_a_batch_lists_its_ccrns(service: Service) -> None:
    ccrns = [await admin.lodge_cargo(service.db) for _ in range(3)]
    batch = await admin.combine_batch(service.db, ccrns)
    reply = await service.api.get(f"/v1/cargo/{batch}")
    assert reply.body == {"number": batch, "kind": "batch", "ccrns": ccrns}


async def test_cargo_check_of_an_unknown_ccrn_says_unknown(service: Service) -> None:
    ccrn = formats.new_ccrn()
    reply = await service.api.get(f"/v1/cargo/{ccrn}")
    assert (reply.status, reply.error_code()) == (404, "ccrn_unknown")
    assert reply.body["error"]["detail"] == {"ccrn": ccrn}


async def test_cargo_check_of_a_wrong_check_digit_is_an_invalid_request(service: Service) -> None:
    ccrn = await admin.lodge_cargo(service.db)
    mistyped = ccrn[:-1] + str((int(ccrn[-1]) + 1) % 10)
    reply = await service.api.get(f"/v1/cargo/{mistyped}")
    assert (reply.status, reply.error_code()) == (422, "invalid_request")


async def test_cargo_check_after_14_days_says_expired(service: Service) -> None:
    ccrn = await admin.lodge_cargo(service.db)
    service.clock.advance(days=14, seconds=1)
    reply = await service.api.get(f"/v1/cargo/{ccrn}")
    assert (reply.status, reply.error_code()) == (410, "ccrn_expired")


async def test_cargo_check_of_a_bundled_ccrn_says_taken(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    assert (await service.api.bundle([ccrn], key="k1")).status == 201
    reply = await service.api.get(f"/v1/cargo/{ccrn}")
    assert (reply.status, reply.error_code()) == (409, "ccrn_taken")
    assert reply.body["error"]["detail"] == {"ccrn": ccrn}


# --- bundles -------------------------------------------------------------------------------


async def test_bundle_is_created_with_a_reference_and_earliest_crossing(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    reply = await service.api.bundle([ccrn], key="call-1:bundle-1")
    assert reply.status == 201
    bundle = reply.body
    assert len(bundle["reference"]) == 10 and bundle["reference"].isdigit()
    assert (bundle["vehicle_mark"], bundle["account"], bundle["ccrns"]) == (MARK, ACCOUNT, [ccrn])
    created = datetime.fromisoformat(bundle["created_at"])
    assert created == START and created.utcoffset() is not None
    assert datetime.fromisoformat(bundle["earliest_crossing"]) == START + timedelta(minutes=30)
    assert bundle["status"] == "active"


async def test_same_idempotency_key_gives_the_same_bundle_once(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    first = await service.api.bundle([ccrn], key="call-1:bundle-1")
    again = await service.api.bundle([ccrn], key="call-1:bundle-1")
    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert await count_bundles(service.db) == 1


async def test_concurrent_retries_with_one_key_make_one_bundle(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    replies = await asyncio.gather(*(service.api.bundle([ccrn], key="same") for _ in range(10)))
    assert sorted(r.status for r in replies) == [200] * 9 + [201]
    assert len({r.body["reference"] for r in replies}) == 1
    assert await count_bundles(service.db) == 1


async def test_twenty_concurrent_bundles_of_one_ccrn_have_one_winner(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    replies = await asyncio.gather(
        *(service.api.bundle([ccrn], key=f"key-{i}", mark=f"AB{i + 1}") for i in range(20))
    )
    assert sorted(r.status for r in replies) == [201] + [409] * 19
    assert {r.error_code() for r in replies if r.status == 409} == {"ccrn_taken"}
    assert await count_bundles(service.db) == 1


async def test_the_database_refuses_two_active_bundles_of_one_ccrn(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    await service.api.bundle([ccrn], key="k1")
    async with service.db.sessions() as session:
        bundle = await session.scalar(select(Bundle))
        assert bundle is not None
        session.add(BundleItem(bundle_id=bundle.id, ccrn=ccrn, active=False))
        await session.flush()  # an inactive (cancelled) item may coexist
        session.add(BundleItem(bundle_id=bundle.id, ccrn=ccrn, active=True))
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_batch_number_bundles_every_ccrn_of_the_batch(service: Service) -> None:
    await service.trucker()
    ccrns = [await admin.lodge_cargo(service.db) for _ in range(3)]
    batch = await admin.combine_batch(service.db, ccrns)
    extra = await admin.lodge_cargo(service.db)
    reply = await service.api.bundle([batch, extra, ccrns[0]], key="k1")
    assert reply.status == 201
    assert reply.body["ccrns"] == [*ccrns, extra]


async def test_bundle_is_all_or_nothing(service: Service) -> None:
    await service.trucker()
    lodged = await admin.lodge_cargo(service.db)
    unknown = formats.new_ccrn()
    reply = await service.api.bundle([lodged, unknown], key="k1")
    assert (reply.status, reply.error_code()) == (404, "ccrn_unknown")
    assert reply.body["error"]["detail"] == {"ccrn": unknown}
    assert (await service.api.get(f"/v1/cargo/{lodged}")).status == 200
    assert await count_bundles(service.db) == 0


async def test_bundle_of_expired_cargo_is_refused(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    service.clock.advance(days=15)
    reply = await service.api.bundle([ccrn], key="k1")
    assert (reply.status, reply.error_code()) == (410, "ccrn_expired")


async def test_bundle_needs_an_idempotency_key(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    submission = {"account": ACCOUNT, "vehicle_mark": MARK, "numbers": [ccrn]}
    reply = await service.api.post("/v1/bundles", submission)
    assert (reply.status, reply.error_code()) == (400, "invalid_request")


@pytest.mark.parametrize("mark", ["IO12", "AB01", "ABC1", "AB12345", ""])
async def test_bundle_to_an_invalid_mark_is_an_invalid_request(service: Service, mark: str) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    reply = await service.api.bundle([ccrn], key="k1", mark=mark)
    assert (reply.status, reply.error_code()) == (422, "invalid_request")


async def test_bundle_of_more_than_50_ccrns_is_an_invalid_request(service: Service) -> None:
    await service.trucker()
    ccrns = [await admin.lodge_cargo(service.db) for _ in range(50)]
    batch = await admin.combine_batch(service.db, ccrns)
    too_many = await service.api.bundle([*ccrns, formats.new_ccrn()], key="k1")
    assert (too_many.status, too_many.error_code()) == (422, "invalid_request")
    expanded = await service.api.bundle([batch, await admin.lodge_cargo(service.db)], key="k2")
    assert (expanded.status, expanded.error_code()) == (422, "invalid_request")


async def test_bundle_for_an_unknown_account_is_refused(service: Service) -> None:
    ccrn = await admin.lodge_cargo(service.db)
    reply = await service.api.bundle([ccrn], key="k1", account="87654321")
    assert (reply.status, reply.error_code()) == (401, "session_required")  # no login can exist


async def test_bundle_records_an_event_on_its_call(service: Service) -> None:
    await service.trucker()
    call_id = (await open_call(service.api)).body["call_id"]
    ccrn = await admin.lodge_cargo(service.db)
    reply = await service.api.bundle([ccrn], key="k1", call_id=call_id)
    events = (await service.api.get(f"/v1/calls/{call_id}")).body["events"]
    assert [(e["name"], e["detail"]["reference"]) for e in events] == [
        ("bundle_submitted", reply.body["reference"])
    ]


def table_statements(statements: list[str]) -> list[tuple[str, str]]:
    """Each statement as (verb, first table), transaction control left out."""
    return [
        (s.split()[0], re.findall(r"(?:FROM|INTO|UPDATE) (\w+)", s)[0])
        for s in statements
        if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))
    ]


@pytest.mark.parametrize("mobile", [None, MOBILE])
async def test_a_bundle_submission_is_four_statements_and_an_sms_two(
    service: Service, mobile: str | None
) -> None:
    """The session check reads the account too, and the unit of work writes without reading
    first: the bundle's INSERT is also the availability check. With a mobile, the SMS is queued
    in it, and sent and its outcome recorded after the reply, by one statement outside a
    transaction. PostgreSQL: the unit of work is one statement, outside a transaction."""
    await admin.create_account(service.db, ACCOUNT, PASSWORD, mobile=mobile)
    call_id = (await open_call(service.api)).body["call_id"]
    ccrn = await admin.lodge_cargo(service.db)
    submission = {"account": ACCOUNT, "vehicle_mark": MARK, "numbers": [ccrn], "call_id": call_id}
    headers = {"Idempotency-Key": "k1", **await login_session(service.db, submission, None)}
    with sql_seen(service.db) as seen:
        reply = await service.api.post("/v1/bundles", submission, headers=headers)
        await service.db.replied_work_done()
    assert reply.status == 201
    outcome = ["UPDATE sms_outbox"] if mobile else []
    if service.db.engine.dialect.name == "postgresql":  # the SMS's INSERT: a row if a mobile
        unit = ["WITH INSERT bundles, INSERT bundle_items, INSERT call_events, INSERT sms_outbox"]
        assert seen.transactions == 0
    else:
        unit = ["INSERT bundles", "INSERT bundle_items", "INSERT call_events"]
        unit += ["INSERT sms_outbox"] if mobile else []
        assert seen.transactions == 1
    assert seen.statements == ["SELECT login_sessions", *unit, *outcome]
    async with service.db.sessions() as session:
        stored = await session.scalar(
            select(Bundle).where(Bundle.reference == reply.body["reference"])
        )
        texts = (await session.scalars(select(SmsOutbox.text))).all()
    assert stored is not None and stored.call_id == call_id
    crossing = datetime.fromisoformat(reply.body["earliest_crossing"])
    text = sms.bundle_text(1, MARK, reply.body["reference"], crossing)
    assert texts == ([text] if mobile else [])  # queued with the bundle, if a mobile


async def test_an_enquiry_is_two_statements_and_a_cancellation_five(service: Service) -> None:
    """The session check reads the account; the enquiry's bundles come with their items; the
    cancellation's items are cancelled by one UPDATE, without a read first."""
    await service.trucker()
    call_id = (await open_call(service.api)).body["call_id"]
    ccrn = await admin.lodge_cargo(service.db)
    submission = {"account": ACCOUNT, "vehicle_mark": MARK, "numbers": [ccrn], "call_id": call_id}
    login = await login_session(service.db, submission, None)
    bundled = await service.api.post(
        "/v1/bundles", submission, headers={"Idempotency-Key": "k1", **login}
    )
    assert bundled.status == 201
    with sql_seen(service.db) as enquiring:
        listed = await service.api.get("/v1/bundles", params={"account": ACCOUNT}, headers=login)
    assert [b["ccrns"] for b in listed.body["bundles"]] == [[ccrn]]
    assert table_statements(enquiring.sent) == [("SELECT", "login_sessions"), ("SELECT", "bundles")]
    cancel = {"account": ACCOUNT, "vehicle_mark": MARK, "ccrn": ccrn, "call_id": call_id}
    with sql_seen(service.db) as cancelling:
        reply = await service.api.post(
            "/v1/unbundle", cancel, headers={"Idempotency-Key": "u1", **login}
        )
    assert reply.body == {"cancelled": [ccrn], "vehicle_mark": MARK}
    assert table_statements(cancelling.sent) == [
        ("SELECT", "login_sessions"),
        ("UPDATE", "bundle_items"),
        ("UPDATE", "bundles"),
        ("INSERT", "unbundlings"),
        ("INSERT", "call_events"),
    ]


async def test_a_retry_finds_its_bundle_after_its_cargo_expired(service: Service) -> None:
    await service.trucker()
    ccrn = await admin.lodge_cargo(service.db)
    first = await service.api.bundle([ccrn], key="k1")
    service.clock.advance(days=15)
    again = await service.api.bundle([ccrn], key="k1")
    assert (first.status, again.status, again.body) == (201, 200, first.body)
    other = await service.api.bundle([ccrn], key="k2")
    assert (other.status, other.error_code()) == (410, "ccrn_expired")


async def test_bundles_are_listed_per_account_and_vehicle(service: Service) -> None:
    await service.trucker()
    first, second = await admin.lodge_cargo(service.db), await admin.lodge_cargo(service.db)
    await service.api.bundle([first], key="k1", mark="AB1")
    service.clock.advance(minutes=1)
    await service.api.bundle([second], key="k2", mark="CD2")
    everything = await service.api.get("/v1/bundles", params={"account": ACCOUNT})
    assert [b["ccrns"] for b in everything.body["bundles"]] == [[second], [first]]
    one = await service.api.get("/v1/bundles", params={"account": ACCOUNT, "vehicle_mark": "AB1"})
    assert [b["vehicle_mark"] for b in one.body["bundles"]] == ["AB1"]
