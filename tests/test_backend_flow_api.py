"""The backend API of the whole call flow, end to end like test_backend_api (real server, real
HTTP, temporary SQLite, injected clock, every reply checked against openapi.yaml): hang-up
handler, first-call registration (mobile by SMS code, terms), the SMS outbox, bundle
confirmations, cancellation, recent vehicles and the service-suspension notice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

import formats
from backend import admin, sms
from backend.api import DATABASE, SMS_SENDER
from backend.app import create_app, start_backend
from backend.database import Database
from backend.models import (
    Account,
    Bundle,
    SmsCode,
    SmsOutbox,
    TermsAcceptance,
    Unbundling,
)
from backend.settings import BackendSettings
from backend.sms import LogSender, MemorySender
from tests.support.api import (
    ACCOUNT,
    API_TOKEN,
    MARK,
    MOBILE,
    PASSWORD,
    START,
    Api,
    Clock,
    Reply,
    Service,
    open_call,
)
from tests.support.databases import DATABASES
from tests.support.stored import database_text

OTHER_MOBILE = "61234567"
TERMS = "2026-11"


class FlakySender(MemorySender):
    """A MemorySender whose gateway can be taken down; its error quotes the text, so a test
    can show that the text never reaches the log."""

    failing = False
    delay = 0.0  # seconds the gateway takes

    async def send(self, mobile: str, text: str) -> None:
        await asyncio.sleep(self.delay)
        if self.failing:
            raise ConnectionError(f"gateway down while sending {text!r}")
        await super().send(mobile, text)


@dataclass
class Flow(Service):
    sender: FlakySender

    async def activating(self, number: str = ACCOUNT, **account: Any) -> str:
        """A migrated account on its first call (needs activation), with a token; the seed."""
        await admin.create_account(self.db, number, PASSWORD, needs_activation=True, **account)
        return await admin.add_token(self.db, number)

    async def send_code(
        self, mobile: str = MOBILE, call_id: int | None = None, account: str = ACCOUNT
    ) -> Reply:
        body = {"mobile": mobile, "call_id": call_id}
        return await self.api.post(f"/v1/accounts/{account}/mobile", body)

    async def verify(
        self, code: str | None, call_id: int | None = None, account: str = ACCOUNT
    ) -> Reply:
        body = {"code": code, "call_id": call_id}
        return await self.api.post(f"/v1/accounts/{account}/mobile/verify", body)

    async def accept(
        self, version: str = TERMS, call_id: int | None = None, account: str = ACCOUNT
    ) -> Reply:
        body = {"version": version, "call_id": call_id}
        return await self.api.post(f"/v1/accounts/{account}/terms", body)

    async def unbundle(
        self,
        ccrn: str | None,
        key: str,
        mark: str = MARK,
        account: str = ACCOUNT,
        call_id: int | None = None,
    ) -> Reply:
        body = {"account": account, "vehicle_mark": mark, "ccrn": ccrn, "call_id": call_id}
        return await self.api.post("/v1/unbundle", body, headers={"Idempotency-Key": key})

    async def account(self, number: str = ACCOUNT) -> Account:
        async with self.db.sessions() as session:
            account = await session.scalar(select(Account).where(Account.number == number))
        assert account is not None
        return account

    async def outbox(self) -> list[SmsOutbox]:
        async with self.db.sessions() as session:
            return list(await session.scalars(select(SmsOutbox).order_by(SmsOutbox.id)))

    async def events(self, call_id: int) -> list[dict[str, Any]]:
        reply = await self.api.get(f"/v1/calls/{call_id}")
        return list(reply.body["events"])

    async def call(self, uniqueid: str = "1700000000.1") -> int:
        return int((await open_call(self.api, uniqueid)).body["call_id"])


@asynccontextmanager
async def serving(
    tmp_path: Path, database_url: str | None = None, **settings: Any
) -> AsyncIterator[Flow]:
    clock = Clock(START)
    base = BackendSettings(
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'ivrs.db'}",
        api_token=API_TOKEN,
        argon2_profile="test",
        secret_key=Fernet.generate_key(),
        recordings_dir=tmp_path / "recordings",
    )
    sender = FlakySender()
    running = await start_backend(replace(base, clock=clock, **settings), sms_sender=sender)
    try:
        async with aiohttp.ClientSession() as http:
            db = running.app[DATABASE]
            yield Flow(Api(http, running.url, db), db, clock, sender)
    finally:
        await running.stop()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    """Every backend API test runs on SQLite and on PostgreSQL (tests/support/databases.py)."""
    return str(request.param)


@pytest.fixture
async def flow(tmp_path: Path, database_url: str) -> AsyncIterator[Flow]:
    async with serving(tmp_path, database_url) as running:
        yield running


async def count(db: Database, model: type[Any]) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


# --- the app and the senders ----------------------------------------------------------------


async def test_the_sender_is_a_keyword_or_named_by_the_settings(tmp_path: Path) -> None:
    settings = BackendSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        secret_key=Fernet.generate_key(),
        sms_sender="memory",
    )
    named = await start_backend(settings, "127.0.0.1", 0)
    try:
        assert isinstance(named.sms_sender, MemorySender)
    finally:
        await named.stop()
    mine = MemorySender()
    assert create_app(settings, sms_sender=mine)[SMS_SENDER] is mine
    assert isinstance(create_app(replace(settings, sms_sender="log"))[SMS_SENDER], LogSender)


async def test_log_sender_logs_the_kind_and_last_4_digits_only() -> None:
    sender = LogSender()
    assert isinstance(sender, sms.SmsSender)
    with capture_logs() as logs, sms.sending("sms_code"):
        await sender.send("+85291234567", "Your Road Cargo IVRS code is 123456")
    assert logs == [
        {"event": "sms_sent", "mobile_last4": "4567", "kind": "sms_code", "log_level": "info"}
    ]
    assert sender.delivered == 1


async def test_memory_sender_finds_the_last_code_by_either_form_of_the_number() -> None:
    sender = MemorySender()
    for code in ("111111", "222222"):
        with sms.sending("sms_code"):
            await sender.send("+85291234567", sms.code_text(code))
    await sender.send("+85291234567", "Bundled 1 CCRN to vehicle AB1, reference 1, ...")
    assert sender.last_code("91234567") == sender.last_code("+85291234567") == "222222"
    assert sender.last_code(OTHER_MOBILE) is None
    assert [m.kind for m in sender.messages(MOBILE)] == ["sms_code", "sms_code", "other"]


# --- hang-up handler ------------------------------------------------------------------------


async def stage_events(api: Api, call_id: int, *stages: str) -> None:
    events = [
        {"at": START.isoformat(), "kind": "stage", "name": stage, "detail": {}} for stage in stages
    ]
    await api.post(f"/v1/calls/{call_id}/events", {"events": events})


async def test_hangup_closes_the_call_at_the_last_stage_reached(flow: Flow) -> None:
    call_id = await flow.call()
    await stage_events(flow.api, call_id, "language", "login", "register")
    flow.clock.advance(seconds=95)
    reply = await flow.api.post("/v1/calls/hangup", {"uniqueid": "1700000000.1", "cause": "16"})
    assert reply.status == 200
    call = reply.body
    assert (call["call_id"], call["outcome"], call["last_stage"]) == (
        call_id,
        "caller_hung_up",
        "register",
    )
    assert call["ended_at"] == (START + timedelta(seconds=95)).isoformat()
    assert call["events"][-1]["name"] == "hangup"
    assert call["events"][-1]["detail"] == {"cause": "16"}


async def test_hangup_before_any_stage_says_unknown(flow: Flow) -> None:
    await flow.call()
    reply = await flow.api.post("/v1/calls/hangup", {"uniqueid": "1700000000.1"})
    assert (reply.body["outcome"], reply.body["last_stage"]) == ("caller_hung_up", "unknown")
    assert reply.body["events"][-1]["detail"] == {"cause": None}


async def test_hangup_keeps_the_account_that_logged_in(flow: Flow) -> None:
    seed = await flow.trucker()
    call_id = await flow.call()
    attempt = {"account": ACCOUNT, "password": PASSWORD, "token_code": flow.code(seed)}
    assert (await flow.api.post("/v1/sessions", attempt | {"call_id": call_id})).status == 200
    reply = await flow.api.post("/v1/calls/hangup", {"uniqueid": "1700000000.1"})
    assert reply.body["account"] == ACCOUNT


async def test_hangup_is_idempotent(flow: Flow) -> None:
    await flow.call()
    first = await flow.api.post("/v1/calls/hangup", {"uniqueid": "1700000000.1", "cause": "16"})
    flow.clock.advance(minutes=1)
    again = await flow.api.post("/v1/calls/hangup", {"uniqueid": "1700000000.1", "cause": "17"})
    assert again.status == 200 and again.body == first.body


async def test_hangup_after_the_ivr_ended_the_call_changes_nothing(flow: Flow) -> None:
    call_id = await flow.call()
    end = {"outcome": "completed", "last_stage": "goodbye", "account": ACCOUNT}
    ended = await flow.api.post(f"/v1/calls/{call_id}/end", end)
    flow.clock.advance(seconds=2)
    reply = await flow.api.post("/v1/calls/hangup", {"uniqueid": "1700000000.1", "cause": "16"})
    assert reply.status == 200 and reply.body == ended.body
    assert reply.body["outcome"] == "completed"


async def test_hangup_racing_the_ivr_end_ends_the_call_once(flow: Flow) -> None:
    for i in range(5):
        uniqueid = f"1700000000.{i + 10}"
        call_id = await flow.call(uniqueid)
        end = {"outcome": "completed", "last_stage": "goodbye", "account": None}
        replies = await asyncio.gather(
            flow.api.post(f"/v1/calls/{call_id}/end", end),
            flow.api.post("/v1/calls/hangup", {"uniqueid": uniqueid}),
        )
        final = (await flow.api.get(f"/v1/calls/{call_id}")).body
        assert all(r.status == 200 for r in replies)
        hangups = [e for e in final["events"] if e["name"] == "hangup"]
        if final["outcome"] == "caller_hung_up":
            assert len(hangups) == 1
        else:
            assert (final["outcome"], final["last_stage"], hangups) == ("completed", "goodbye", [])


async def test_hangup_of_an_unknown_call_is_not_found(flow: Flow) -> None:
    reply = await flow.api.post("/v1/calls/hangup", {"uniqueid": "nobody.1", "cause": None})
    assert (reply.status, reply.error_code()) == (404, "call_unknown")


@pytest.mark.parametrize(
    ("body", "status"),
    [({"cause": "16"}, 422), ({"uniqueid": ""}, 422), ({"uniqueid": 17}, 422), (None, 400)],
)
async def test_hangup_with_a_bad_body_is_an_invalid_request(
    flow: Flow, body: Any, status: int
) -> None:
    raw = b"{" if body is None else None
    reply = await flow.api.request("POST", "/v1/calls/hangup", body=body, raw=raw)
    assert (reply.status, reply.error_code()) == (status, "invalid_request")


# --- login: what the first call still has to do ----------------------------------------------


async def login(flow: Flow, seed: str) -> dict[str, Any]:
    reply = await flow.api.login(flow.code(seed))
    assert reply.status == 200
    flow.clock.advance(seconds=60)  # the next login needs a fresh code
    return dict(reply.body["account"])


async def test_a_migrated_account_needs_activation(flow: Flow) -> None:
    seed = await flow.activating()
    account = await login(flow, seed)
    assert (account["needs_activation"], account["mobile_registered"]) == (True, False)
    assert (account["terms_accepted"], account["mobile"]) == (False, None)


async def test_mobile_and_terms_done_end_the_activation(flow: Flow) -> None:
    seed = await flow.activating()
    await flow.send_code()
    assert (await flow.verify(flow.sender.last_code(MOBILE))).status == 200
    half = await login(flow, seed)
    assert (half["needs_activation"], half["mobile_registered"]) == (True, True)
    assert (half["terms_accepted"], half["mobile"]) == (False, MOBILE)
    assert (await flow.accept()).status == 200
    done = await login(flow, seed)
    assert (done["needs_activation"], done["mobile_registered"], done["terms_accepted"]) == (
        False,
        True,
        True,
    )
    assert (await flow.account()).needs_activation is False


async def test_terms_of_an_older_version_are_not_accepted_terms(flow: Flow) -> None:
    seed = await flow.activating(mobile=MOBILE)
    async with flow.db.sessions.begin() as session:
        await session.execute(update(Account).values(terms_version_accepted="2025-01"))
    account = await login(flow, seed)
    assert (account["needs_activation"], account["terms_accepted"]) == (True, False)


async def test_an_account_not_marked_for_activation_never_needs_it(flow: Flow) -> None:
    seed = await flow.trucker()
    account = await login(flow, seed)
    assert account["needs_activation"] is False
    assert (account["mobile_registered"], account["terms_accepted"]) == (False, False)


# --- mobile registration: the code ----------------------------------------------------------


async def test_a_code_is_sent_by_sms_and_stored_only_as_a_hash(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    reply = await flow.send_code(call_id=call_id)
    assert (reply.status, reply.body) == (202, {"codes_left": 2})
    [message] = flow.sender.sent
    code = flow.sender.last_code(MOBILE)
    assert code is not None and len(code) == 6 and code.isdigit()
    assert (message.mobile, message.kind) == ("+85291234567", "sms_code")
    assert message.text == f"Your Road Cargo IVRS code is {code}"
    [row] = await flow.outbox()
    assert (row.mobile, row.kind, row.text) == (
        "+85291234567",
        "sms_code",
        "Your Road Cargo IVRS code is ******",
    )
    assert row.created_at == START and row.sent_at == START
    assert code not in await database_text(flow.db)
    assert (await flow.account()).mobile is None  # not before the code is verified
    events = await flow.events(call_id)
    assert [(e["name"], e["detail"]) for e in events] == [
        ("sms_code_sent", {"account": ACCOUNT, "mobile_last4": "4567", "seq": 1})
    ]


@pytest.mark.parametrize("mobile", ["51234567", "61234567", "91234567", "70123456"])
async def test_hong_kong_mobile_numbers_are_accepted(flow: Flow, mobile: str) -> None:
    await flow.activating()
    assert (await flow.send_code(mobile)).status == 202
    assert flow.sender.last_code(mobile) is not None


@pytest.mark.parametrize(
    "mobile",
    [
        "21234567",  # landline
        "31234567",  # landline
        "81234567",  # pager
        "71234567",  # unassigned
        "12345678",  # not a Hong Kong number
        "9123456",  # 7 digits
        "912345678",  # 9 digits
        "9123456a",
        "+85291234567",  # 8 digits are asked for
        "",
    ],
)
async def test_other_numbers_are_refused_as_mobile_invalid(flow: Flow, mobile: str) -> None:
    await flow.activating()
    reply = await flow.send_code(mobile)
    assert (reply.status, reply.error_code()) == (422, "mobile_invalid")
    assert mobile not in reply.body["error"]["message"] or not mobile
    assert flow.sender.sent == [] and await count(flow.db, SmsCode) == 0


async def test_at_most_three_codes_per_call(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    left = [(await flow.send_code(call_id=call_id)).body["codes_left"] for _ in range(3)]
    assert left == [2, 1, 0]
    fourth = await flow.send_code(OTHER_MOBILE, call_id=call_id)
    assert (fourth.status, fourth.error_code()) == (429, "sms_code_limit")
    assert len(flow.sender.sent) == 3
    next_call = await flow.call("1700000000.2")
    assert (await flow.send_code(call_id=next_call)).body == {"codes_left": 2}


async def test_concurrent_code_requests_of_a_call_send_three(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    replies = await asyncio.gather(*(flow.send_code(call_id=call_id) for _ in range(6)))
    assert sorted(r.status for r in replies) == [202] * 3 + [429] * 3
    assert sorted(r.body["codes_left"] for r in replies if r.status == 202) == [0, 1, 2]
    assert len(flow.sender.sent) == 3 and await count(flow.db, SmsCode) == 3


async def test_without_a_call_three_codes_an_hour(flow: Flow) -> None:
    await flow.activating()
    for _ in range(3):
        assert (await flow.send_code()).status == 202
    assert (await flow.send_code(call_id=99)).error_code() == "sms_code_limit"  # unknown call
    flow.clock.advance(hours=1)
    assert (await flow.send_code()).status == 202


async def test_a_code_for_an_unknown_account_is_refused(flow: Flow) -> None:
    reply = await flow.send_code(account="87654321")
    assert (reply.status, reply.error_code()) == (404, "account_unknown")
    assert flow.sender.sent == []


async def test_a_failed_delivery_leaves_the_sms_unsent_and_unlogged(flow: Flow) -> None:
    await flow.activating()
    flow.sender.failing = True
    with capture_logs() as logs:
        reply = await flow.send_code()
    assert reply.status == 202
    [row] = await flow.outbox()
    assert row.sent_at is None and row.text.endswith("******")
    [failure] = [e for e in logs if e["event"] == "sms_failed"]
    assert (failure["kind"], failure["mobile_last4"], failure["error"]) == (
        "sms_code",
        "4567",
        "ConnectionError",
    )
    assert "code is" not in json.dumps(logs, default=str)


async def test_a_stuck_gateway_is_given_up_before_the_ivr_times_out(
    tmp_path: Path, database_url: str
) -> None:
    async with serving(tmp_path, database_url, sms_send_seconds=0.05) as flow:
        await flow.activating()
        flow.sender.delay = 5.0
        with capture_logs() as logs:
            reply = await asyncio.wait_for(flow.send_code(), timeout=2)
        assert reply.status == 202  # it may yet arrive: the caller is asked for the code
        assert [(row.sent_at, row.status) for row in await flow.outbox()] == [(None, "unknown")]
    assert [e["error"] for e in logs if e["event"] == "sms_failed"] == ["TimeoutError"]


# --- mobile registration: verification -----------------------------------------------------


async def test_the_right_code_registers_the_mobile(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    await flow.send_code(call_id=call_id)
    code = flow.sender.last_code(MOBILE)
    with capture_logs() as logs:
        reply = await flow.verify(code, call_id=call_id)
    assert (reply.status, reply.body) == (200, {"mobile": MOBILE})
    assert (await flow.account()).mobile == MOBILE
    events = await flow.events(call_id)
    assert [e["name"] for e in events] == ["sms_code_sent", "mobile_registered"]
    assert code is not None and code not in json.dumps(events) + json.dumps(logs, default=str)


async def test_a_wrong_code_leaves_the_mobile_unchanged(flow: Flow) -> None:
    await flow.activating(mobile=MOBILE)  # a registered mobile being replaced
    call_id = await flow.call()
    await flow.send_code(OTHER_MOBILE, call_id=call_id)
    code = flow.sender.last_code(OTHER_MOBILE)
    assert code is not None
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with capture_logs() as logs:
        reply = await flow.verify(wrong, call_id=call_id)
    assert (reply.status, reply.error_code()) == (401, "sms_code_wrong")
    assert wrong not in json.dumps(reply.body) + json.dumps(logs, default=str)
    assert (await flow.account()).mobile == MOBILE
    assert (await flow.events(call_id))[-1]["detail"] == {"account": ACCOUNT, "reason": "wrong"}
    assert (await flow.verify(code)).body == {"mobile": OTHER_MOBILE}


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef"])
async def test_a_malformed_code_is_a_wrong_code(flow: Flow, code: str) -> None:
    await flow.activating()
    await flow.send_code()
    reply = await flow.verify(code)
    assert (reply.status, reply.error_code()) == (401, "sms_code_wrong")
    assert (await flow.account()).mobile is None


async def test_three_wrong_tries_spend_the_code(flow: Flow) -> None:
    await flow.activating()
    await flow.send_code()
    code = flow.sender.last_code(MOBILE)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        assert (await flow.verify(wrong)).error_code() == "sms_code_wrong"
    reply = await flow.verify(code)
    assert (reply.status, reply.error_code()) == (401, "sms_code_wrong")
    assert (await flow.account()).mobile is None
    await flow.send_code()  # a new code has its own tries
    assert (await flow.verify(flow.sender.last_code(MOBILE))).status == 200


async def test_a_code_expires_after_10_minutes(flow: Flow) -> None:
    await flow.activating()
    await flow.send_code()
    flow.clock.advance(minutes=10)
    reply = await flow.verify(flow.sender.last_code(MOBILE))
    assert (reply.status, reply.error_code()) == (401, "sms_code_wrong")
    assert (await flow.account()).mobile is None


async def test_only_the_newest_code_counts(flow: Flow) -> None:
    await flow.activating()
    await flow.send_code(MOBILE)
    first = flow.sender.last_code(MOBILE)
    await flow.send_code(OTHER_MOBILE)
    second = flow.sender.last_code(OTHER_MOBILE)
    if first != second:
        assert (await flow.verify(first)).error_code() == "sms_code_wrong"
    assert (await flow.verify(second)).body == {"mobile": OTHER_MOBILE}
    assert (await flow.account()).mobile == OTHER_MOBILE


async def test_verifying_with_no_code_sent_is_no_pending_mobile(flow: Flow) -> None:
    await flow.activating()
    reply = await flow.verify("123456")
    assert (reply.status, reply.error_code()) == (404, "no_pending_mobile")


async def test_a_used_code_repeats_its_answer_and_nothing_else(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    await flow.send_code(call_id=call_id)
    code = flow.sender.last_code(MOBILE)
    assert (await flow.verify(code, call_id=call_id)).status == 200
    again = await flow.verify(code, call_id=call_id)  # a retry after a lost answer
    assert (again.status, again.body) == (200, {"mobile": MOBILE})
    other = await flow.verify("000000" if code != "000000" else "111111")
    assert (other.status, other.error_code()) == (404, "no_pending_mobile")
    names = [e["name"] for e in await flow.events(call_id)]
    assert names.count("mobile_registered") == 1


async def test_concurrent_right_codes_register_the_mobile_once(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    await flow.send_code(call_id=call_id)
    code = flow.sender.last_code(MOBILE)
    replies = await asyncio.gather(*(flow.verify(code, call_id=call_id) for _ in range(2)))
    assert [(r.status, r.body) for r in replies] == [(200, {"mobile": MOBILE})] * 2
    names = [e["name"] for e in await flow.events(call_id)]
    assert names.count("mobile_registered") == 1
    async with flow.db.sessions() as session:
        [stored] = list(await session.scalars(select(SmsCode)))
    assert stored.used_at is not None
    assert (await flow.account()).mobile == MOBILE


async def test_concurrent_wrong_codes_never_register(flow: Flow) -> None:
    await flow.activating()
    await flow.send_code()
    code = flow.sender.last_code(MOBILE)
    wrongs = [f"{(int(code or 0) + i) % 1_000_000:06d}" for i in range(1, 6)]
    replies = await asyncio.gather(*(flow.verify(w) for w in wrongs))
    assert {r.error_code() for r in replies} == {"sms_code_wrong"}
    assert (await flow.account()).mobile is None
    assert (await flow.verify(code)).status == 401  # its 3 tries are spent


async def test_verification_of_an_unknown_account_is_refused(flow: Flow) -> None:
    reply = await flow.verify("123456", account="87654321")
    assert (reply.status, reply.error_code()) == (404, "account_unknown")


async def test_verification_needs_a_code(flow: Flow) -> None:
    await flow.activating()
    reply = await flow.api.post(f"/v1/accounts/{ACCOUNT}/mobile/verify", {"call_id": None})
    assert (reply.status, reply.error_code()) == (422, "invalid_request")


# --- terms and conditions --------------------------------------------------------------------


async def test_the_current_terms_version_is_configured(flow: Flow, tmp_path: Path) -> None:
    assert (await flow.api.get("/v1/terms")).body == {"version": TERMS}
    async with serving(tmp_path / "other", terms_version="2027-01") as other:
        assert (await other.api.get("/v1/terms")).body == {"version": "2027-01"}


async def test_accepting_the_terms_stores_version_time_and_call(flow: Flow) -> None:
    await flow.activating()
    call_id = await flow.call()
    reply = await flow.accept(call_id=call_id)
    assert (reply.status, reply.body) == (
        200,
        {"terms_version_accepted": TERMS, "accepted_at": START.isoformat(), "call_id": call_id},
    )
    assert (await flow.account()).terms_version_accepted == TERMS
    events = await flow.events(call_id)
    assert [(e["name"], e["detail"]) for e in events] == [
        ("terms_accepted", {"account": ACCOUNT, "version": TERMS})
    ]


async def test_accepting_again_answers_with_the_first_acceptance(flow: Flow) -> None:
    await flow.activating()
    first = await flow.accept(call_id=await flow.call())
    flow.clock.advance(minutes=5)
    again = await flow.accept(call_id=None)
    assert again.body == first.body
    assert await count(flow.db, TermsAcceptance) == 1


async def test_concurrent_acceptances_store_one(flow: Flow) -> None:
    await flow.activating()
    replies = await asyncio.gather(*(flow.accept() for _ in range(5)))
    assert {json.dumps(r.body) for r in replies if r.status == 200} == {json.dumps(replies[0].body)}
    assert all(r.status == 200 for r in replies)
    assert await count(flow.db, TermsAcceptance) == 1


async def test_an_unknown_call_is_stored_as_none(flow: Flow) -> None:
    await flow.activating()
    assert (await flow.accept(call_id=424242)).body["call_id"] is None


async def test_only_the_current_terms_can_be_accepted(flow: Flow) -> None:
    await flow.activating()
    reply = await flow.accept(version="2025-01")
    assert (reply.status, reply.error_code()) == (422, "terms_not_current")
    assert await count(flow.db, TermsAcceptance) == 0
    assert (await flow.account()).terms_version_accepted is None


async def test_terms_of_an_unknown_account_are_refused(flow: Flow) -> None:
    reply = await flow.accept(account="87654321")
    assert (reply.status, reply.error_code()) == (404, "account_unknown")


async def test_terms_need_a_version(flow: Flow) -> None:
    await flow.activating()
    reply = await flow.api.post(f"/v1/accounts/{ACCOUNT}/terms", {"version": ""})
    assert (reply.status, reply.error_code()) == (422, "invalid_request")


@pytest.mark.parametrize("terms_first", [True, False])
async def test_activation_ends_when_both_are_done_in_either_order(
    flow: Flow, terms_first: bool
) -> None:
    await flow.activating()
    if terms_first:
        await flow.accept()
        assert (await flow.account()).needs_activation is True
    await flow.send_code()
    await flow.verify(flow.sender.last_code(MOBILE))
    if not terms_first:
        assert (await flow.account()).needs_activation is True
        await flow.accept()
    assert (await flow.account()).needs_activation is False


async def test_mobile_and_terms_at_the_same_time_end_the_activation(flow: Flow) -> None:
    await flow.activating()
    await flow.send_code()
    await asyncio.gather(flow.verify(flow.sender.last_code(MOBILE)), flow.accept())
    assert (await flow.account()).needs_activation is False


# --- bundle confirmation SMS ----------------------------------------------------------------


async def test_a_new_bundle_is_confirmed_by_sms(flow: Flow) -> None:
    await flow.trucker()
    async with flow.db.sessions.begin() as session:
        await session.execute(update(Account).values(mobile=MOBILE))
    ccrns = [await admin.lodge_cargo(flow.db) for _ in range(2)]
    reply = await flow.api.bundle(ccrns, key="k1")
    reference = reply.body["reference"]
    await flow.db.replied_work_done()  # sent after the reply
    [message] = flow.sender.messages(MOBILE)
    assert message.kind == "bundle_confirmation"
    assert message.text == (
        f"Bundled 2 CCRNs to vehicle {MARK}, reference {reference}, may cross from 10:30."
    )
    [row] = await flow.outbox()
    assert (row.kind, row.text, row.sent_at) == ("bundle_confirmation", message.text, START)
    again = await flow.api.bundle(ccrns, key="k1")  # a replay sends nothing
    await flow.db.replied_work_done()
    assert again.status == 200 and len(flow.sender.sent) == 1


async def test_a_bundle_is_answered_without_waiting_for_its_sms_which_a_stop_waits_for(
    tmp_path: Path, database_url: str
) -> None:
    """The caller hears the receipt while the provider takes its time (seconds, at worst
    IVRS_SMS_SEND_SECONDS); a backend stopped meanwhile still sends it and records it."""
    async with serving(tmp_path, database_url) as flow:
        await flow.trucker()
        async with flow.db.sessions.begin() as session:
            await session.execute(update(Account).values(mobile=MOBILE))
        flow.sender.delay = 1.5
        started = time.monotonic()
        reply = await flow.api.bundle([await admin.lodge_cargo(flow.db)], key="k1")
        assert reply.status == 201 and time.monotonic() - started < 1.0
        assert flow.sender.sent == []  # still on its way
        [row] = await flow.outbox()
        assert row.status == "pending"
        db = flow.db
    # The backend has stopped (serving's exit), having waited for the SMS.
    assert [m.kind for m in flow.sender.sent] == ["bundle_confirmation"]
    assert not db._after_reply


async def test_one_ccrn_is_said_in_the_singular(flow: Flow) -> None:
    await flow.activating(mobile=MOBILE)
    reply = await flow.api.bundle([await admin.lodge_cargo(flow.db)], key="k1")
    await flow.db.replied_work_done()
    assert flow.sender.sent[0].text.startswith(f"Bundled 1 CCRN to vehicle {MARK}, reference ")
    assert reply.body["reference"] in flow.sender.sent[0].text


async def test_no_registered_mobile_no_confirmation(flow: Flow) -> None:
    await flow.trucker()
    assert (await flow.api.bundle([await admin.lodge_cargo(flow.db)], key="k1")).status == 201
    await flow.db.replied_work_done()
    assert flow.sender.sent == [] and await flow.outbox() == []


async def test_a_failed_confirmation_does_not_fail_the_bundle(flow: Flow) -> None:
    await flow.activating(mobile=MOBILE)
    flow.sender.failing = True
    reply = await flow.api.bundle([await admin.lodge_cargo(flow.db)], key="k1")
    assert reply.status == 201
    await flow.db.replied_work_done()
    [row] = await flow.outbox()
    assert (row.kind, row.sent_at, row.status) == ("bundle_confirmation", None, "unknown")


async def test_a_refused_bundle_sends_nothing(flow: Flow) -> None:
    await flow.activating(mobile=MOBILE)
    reply = await flow.api.bundle([formats.new_ccrn()], key="k1")
    assert reply.error_code() == "ccrn_unknown"
    assert flow.sender.sent == [] and await flow.outbox() == []


# --- cancel (unbundle) and enquiry ------------------------------------------------------------


async def bundled(flow: Flow, n: int, key: str, mark: str = MARK) -> list[str]:
    ccrns = [await admin.lodge_cargo(flow.db) for _ in range(n)]
    assert (await flow.api.bundle(ccrns, key=key, mark=mark)).status == 201
    return ccrns


async def enquiry(flow: Flow, mark: str = MARK, account: str = ACCOUNT) -> list[dict[str, Any]]:
    reply = await flow.api.get("/v1/bundles", params={"account": account, "vehicle_mark": mark})
    return list(reply.body["bundles"])


async def test_cancelling_one_ccrn_leaves_the_others(flow: Flow) -> None:
    await flow.trucker()
    call_id = await flow.call()
    first, second = await bundled(flow, 2, "b1")
    reply = await flow.unbundle(first, key="u1", call_id=call_id)
    assert (reply.status, reply.body) == (200, {"cancelled": [first], "vehicle_mark": MARK})
    [bundle] = await enquiry(flow)
    assert (bundle["ccrns"], bundle["status"]) == ([second], "active")
    events = await flow.events(call_id)
    assert [(e["name"], e["detail"]) for e in events] == [
        ("unbundled", {"vehicle_mark": MARK, "ccrns": [first]})
    ]


async def test_cancelling_the_last_ccrn_cancels_the_bundle(flow: Flow) -> None:
    await flow.trucker()
    [ccrn] = await bundled(flow, 1, "b1")
    assert (await flow.unbundle(ccrn, key="u1")).body["cancelled"] == [ccrn]
    assert await enquiry(flow) == []
    async with flow.db.sessions() as session:
        assert await session.scalar(select(Bundle.status)) == "cancelled"
    # The key's bundle still answers a replay, with the CCRNs it held.
    replay = await flow.api.bundle([ccrn], key="b1")
    assert (replay.status, replay.body["status"], replay.body["ccrns"]) == (
        200,
        "cancelled",
        [ccrn],
    )


async def test_cancelling_all_cancels_every_ccrn_on_that_vehicle_only(flow: Flow) -> None:
    await flow.trucker()
    one = await bundled(flow, 2, "b1")
    flow.clock.advance(minutes=1)
    two = await bundled(flow, 1, "b2")
    elsewhere = await bundled(flow, 1, "b3", mark="CD2")
    reply = await flow.unbundle(None, key="u1")
    assert reply.body == {"cancelled": [*one, *two], "vehicle_mark": MARK}
    assert await enquiry(flow) == []
    assert [b["ccrns"] for b in await enquiry(flow, "CD2")] == [elsewhere]


async def test_a_cancelled_ccrn_can_be_bundled_again(flow: Flow) -> None:
    await flow.trucker()
    [ccrn] = await bundled(flow, 1, "b1")
    await flow.unbundle(ccrn, key="u1")
    assert (await flow.api.get(f"/v1/cargo/{ccrn}")).status == 200
    assert (await flow.api.bundle([ccrn], key="b2", mark="CD2")).status == 201


async def test_only_the_accounts_own_bundles_can_be_cancelled(flow: Flow) -> None:
    await flow.trucker()
    await flow.trucker("87654321")
    [theirs] = await bundled(flow, 1, "b1")
    for ccrn in (theirs, None):
        reply = await flow.unbundle(ccrn, key=f"u-{ccrn}", account="87654321")
        assert (reply.status, reply.error_code()) == (404, "bundle_not_found")
    assert [b["ccrns"] for b in await enquiry(flow)] == [[theirs]]


async def test_nothing_to_cancel_is_bundle_not_found(flow: Flow) -> None:
    await flow.trucker()
    [ccrn] = await bundled(flow, 1, "b1")
    other_vehicle = await flow.unbundle(ccrn, key="u1", mark="CD2")
    not_bundled = await flow.unbundle(await admin.lodge_cargo(flow.db), key="u2")
    empty_vehicle = await flow.unbundle(None, key="u3", mark="CD2")
    for reply in (other_vehicle, not_bundled, empty_vehicle):
        assert (reply.status, reply.error_code()) == (404, "bundle_not_found")
    await flow.unbundle(ccrn, key="u4")
    twice = await flow.unbundle(ccrn, key="u5")
    assert (twice.status, twice.error_code()) == (404, "bundle_not_found")


async def test_a_replayed_cancellation_gets_the_same_answer(flow: Flow) -> None:
    await flow.trucker()
    ccrns = await bundled(flow, 2, "b1")
    first = await flow.unbundle(None, key="u1")
    again = await flow.unbundle(None, key="u1")
    assert (again.status, again.body) == (200, first.body)
    assert first.body["cancelled"] == ccrns
    other = await flow.unbundle(ccrns[0], key="u1")
    assert (other.status, other.error_code()) == (422, "invalid_request")


async def test_a_used_cancellation_key_cancels_nothing_new(flow: Flow) -> None:
    """The key is looked up only when a cancellation fails: a replay, or another request with
    the key, that finds CCRNs to cancel is refused by the key's unique index, all undone."""
    await flow.trucker()
    [first] = await bundled(flow, 1, "b1")
    assert (await flow.unbundle(None, key="u1")).body["cancelled"] == [first]
    [second] = await bundled(flow, 1, "b2")
    again = await flow.unbundle(None, key="u1")
    assert (again.status, again.body["cancelled"]) == (200, [first])
    other = await flow.unbundle(second, key="u1")
    assert (other.status, other.error_code()) == (422, "invalid_request")
    assert [b["ccrns"] for b in await enquiry(flow)] == [[second]]
    assert await count(flow.db, Unbundling) == 1


async def test_concurrent_retries_of_a_cancellation_cancel_once(flow: Flow) -> None:
    await flow.trucker()
    ccrns = await bundled(flow, 3, "b1")
    replies = await asyncio.gather(*(flow.unbundle(None, key="same") for _ in range(5)))
    assert [(r.status, r.body["cancelled"]) for r in replies] == [(200, ccrns)] * 5
    assert await count(flow.db, Unbundling) == 1


async def test_two_cancellations_of_one_ccrn_have_one_winner(flow: Flow) -> None:
    await flow.trucker()
    [ccrn, _] = await bundled(flow, 2, "b1")
    replies = await asyncio.gather(*(flow.unbundle(ccrn, key=f"u{i}") for i in range(5)))
    assert sorted(r.status for r in replies) == [200] + [404] * 4


async def test_cancellation_needs_an_idempotency_key(flow: Flow) -> None:
    await flow.trucker()
    body = {"account": ACCOUNT, "vehicle_mark": MARK, "ccrn": None}
    reply = await flow.api.post("/v1/unbundle", body)
    assert (reply.status, reply.error_code()) == (400, "invalid_request")


async def test_cancellation_for_an_unknown_account_is_refused(flow: Flow) -> None:
    reply = await flow.unbundle(None, key="u1", account="87654321")
    assert (reply.status, reply.error_code()) == (401, "session_required")  # no login can exist


@pytest.mark.parametrize(
    "body",
    [
        {"vehicle_mark": "IO12", "ccrn": None},  # not a mark
        {"ccrn": "__bad_check_digit__"},
        {"ccrn": "1234567890"},  # a batch number is not a CCRN
        {"ccrn": 123},
        {"ccrn": "__missing__"},  # ccrn is required (null: all)
    ],
)
async def test_a_malformed_cancellation_is_an_invalid_request(
    flow: Flow, body: dict[str, Any]
) -> None:
    await flow.trucker()
    request = {"account": ACCOUNT, "vehicle_mark": MARK, "ccrn": None} | body
    if request["ccrn"] == "__missing__":
        del request["ccrn"]
    if request.get("ccrn") == "__bad_check_digit__":
        ccrn = formats.new_ccrn()
        request["ccrn"] = ccrn[:-1] + str((int(ccrn[-1]) + 1) % 10)
    reply = await flow.api.post("/v1/unbundle", request, headers={"Idempotency-Key": "u1"})
    assert (reply.status, reply.error_code()) == (422, "invalid_request")


# --- recent vehicles: the login answers them -------------------------------------------------


async def test_the_login_answers_the_last_three_distinct_marks(flow: Flow) -> None:
    seed = await flow.trucker()
    await flow.trucker("87654321")
    for i, mark in enumerate(["AB1", "CD2", "AB1", "EF3", "GH4", "EF3"]):
        await bundled(flow, 1, f"b{i}", mark=mark)
        flow.clock.advance(minutes=1)
    ccrn = await admin.lodge_cargo(flow.db)
    await flow.api.bundle([ccrn], key="theirs", mark="JK5", account="87654321")
    assert (await login(flow, seed))["recent_vehicles"] == ["EF3", "GH4", "AB1"]


async def test_a_cancelled_bundle_still_makes_a_recent_vehicle(flow: Flow) -> None:
    seed = await flow.trucker()
    [ccrn] = await bundled(flow, 1, "b1")
    await flow.unbundle(ccrn, key="u1")
    assert (await login(flow, seed))["recent_vehicles"] == [MARK]


async def test_no_bundles_no_recent_vehicles(flow: Flow) -> None:
    seed = await flow.trucker()
    assert (await login(flow, seed))["recent_vehicles"] == []


# --- the call's opening: service suspension, remembered language ------------------------------


async def test_no_suspension_configured(flow: Flow) -> None:
    reply = await open_call(flow.api)
    assert reply.status == 201
    assert reply.body["service"] == {"suspended": False, "from": None, "until": None}


async def test_suspended_within_the_window_only(tmp_path: Path, database_url: str) -> None:
    start, end = START + timedelta(hours=1), START + timedelta(hours=3)
    suspension = {"suspended_from": start, "suspended_until": end}
    async with serving(tmp_path, database_url, **suspension) as flow:
        window = {"from": start.isoformat(), "until": end.isoformat()}
        seen = []
        for n, at in enumerate((START, start, end - timedelta(seconds=1), end)):
            flow.clock.now = at
            reply = await open_call(flow.api, f"1700000000.{n}")
            assert {k: reply.body["service"][k] for k in window} == window
            seen.append(reply.body["service"]["suspended"])
        assert seen == [False, True, True, False]


async def test_the_opening_answers_the_caller_numbers_last_language(flow: Flow) -> None:
    """The language of the number's last ended call; none for a number not heard before, nor
    from a call still going on."""
    first = await open_call(flow.api, "1700000000.1")
    assert first.body["language"] is None
    end = {"outcome": "completed", "last_stage": "menu", "account": None, "language": "zh_CN"}
    going_on = await open_call(flow.api, "1700000000.2")
    assert going_on.body["language"] is None  # the first call has not ended yet
    await flow.api.post(f"/v1/calls/{first.body['call_id']}/end", end)
    again = await open_call(flow.api, "1700000000.3")
    assert again.body["language"] == "zh_CN"
    anonymous = await flow.api.post(
        "/v1/calls", {"uniqueid": "1700000000.4", "hotline": "39023333", "caller_id": None}
    )
    assert anonymous.body["language"] is None
