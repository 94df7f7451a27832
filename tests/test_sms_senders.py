"""The real SMS senders (backend/sms/http.py) against stand-ins on loopback that speak Twilio's
documented Messages API and the webhook contract (docs/operations.md, "SMS"), through the
backend's real HTTP API: delivered; refused (no retry, `sms_not_sent`); provider down (bounded
retries, then `sms_not_sent`); timeouts and a slow provider (recorded unknown, never resent,
the answer within the send time); every attempt on the outbox row; one send per request; the
code in no log, call event or stored row."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from structlog.testing import capture_logs

from backend import admin
from backend.api import DATABASE
from backend.app import start_backend
from backend.database import Database
from backend.models import SmsOutbox
from backend.settings import BackendSettings
from backend.sms.config import SmsGateway, TwilioConfig
from tests.support.api import ACCOUNT, API_TOKEN, MOBILE, PASSWORD, START, Api, Clock, open_call
from tests.support.databases import DATABASES
from tests.support.sms_standins import (
    ACCOUNT_SID,
    E164,
    SENDER_ID,
    StandIn,
    standing_in,
)
from tests.support.stored import database_text


def refusing_url() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the backend with a real sender -----------------------------------------------------------


@dataclass
class Backend:
    api: Api
    db: Database

    async def send_code(self, call_id: int | None = None) -> tuple[Any, float]:
        started = time.monotonic()
        reply = await self.api.post(
            f"/v1/accounts/{ACCOUNT}/mobile", {"mobile": MOBILE, "call_id": call_id}
        )
        return reply, time.monotonic() - started

    async def outbox(self) -> list[SmsOutbox]:
        async with self.db.sessions() as session:
            return list(await session.scalars(select(SmsOutbox).order_by(SmsOutbox.id)))

    async def events(self, call_id: int) -> list[dict[str, Any]]:
        return list((await self.api.get(f"/v1/calls/{call_id}")).body["events"])


@asynccontextmanager
async def backend_sending_by(
    tmp_path: Path, database_url: str, name: str, gateway: SmsGateway
) -> AsyncIterator[Backend]:
    settings = BackendSettings(
        database_url=database_url,
        api_token=API_TOKEN,
        argon2_profile="test",
        secret_key=Fernet.generate_key(),
        recordings_dir=tmp_path / "recordings",
        sms_sender=name,
        sms_gateway=gateway,
        clock=Clock(START),
    )
    running = await start_backend(settings)  # the sender the settings name
    try:
        async with aiohttp.ClientSession() as http:
            backend = Backend(Api(http, running.url), running.app[DATABASE])
            await admin.create_account(backend.db, ACCOUNT, PASSWORD, needs_activation=True)
            yield backend
    finally:
        await running.stop()


@pytest.fixture(params=["twilio", "webhook"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def provider_and_backend(
    tmp_path: Path, database_url: str, provider: str, *script: str
) -> AsyncIterator[tuple[StandIn, Backend]]:
    async with (
        standing_in(provider, *script) as stand_in,
        backend_sending_by(tmp_path, database_url, provider, stand_in.gateway()) as backend,
    ):
        yield stand_in, backend


def attempts(row: SmsOutbox) -> list[tuple[str, int | None, str | None]]:
    return [(a["outcome"], a["status"], a["error"]) for a in row.attempts]


# --- delivered ---------------------------------------------------------------------------------


@pytest.mark.parametrize("database", DATABASES, indirect=True)
async def test_a_code_is_delivered_once_and_registers_the_mobile(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider) as (stand_in, backend):
        call_id = int((await open_call(backend.api, "1700000000.1")).body["call_id"])
        with capture_logs() as logs:
            reply, _ = await backend.send_code(call_id)
        assert (reply.status, reply.body) == (202, {"codes_left": 2})
        [request] = stand_in.received
        code = request.code
        assert code is not None
        if provider == "twilio":
            assert (request.fields["To"], request.fields["From"]) == (E164, SENDER_ID)
            assert request.fields["Body"] == f"Your Road Cargo IVRS code is {code}"
        else:
            assert (request.fields["to"], request.fields["kind"]) == (E164, "sms_code")
            assert request.headers["Idempotency-Key"] == request.fields["reference"]
        [row] = await backend.outbox()
        status = 201 if provider == "twilio" else 202
        assert (row.status, attempts(row), row.sent_at) == (
            "sent",
            [("accepted", status, None)],
            START,
        )
        assert row.provider_ref is not None and row.provider_ref.startswith("SM")
        verified = await backend.api.post(
            f"/v1/accounts/{ACCOUNT}/mobile/verify", {"code": code, "call_id": call_id}
        )
        assert (verified.status, verified.body) == (200, {"mobile": MOBILE})
        events = await backend.events(call_id)
        # Twilio echoed the text: it is stored nowhere, logged nowhere.
        assert code not in await database_text(backend.db)
        assert code not in json.dumps(logs, default=str) + json.dumps(events)
        assert [e["event"] for e in logs if e["event"].startswith("sms_")] == [
            "sms_attempt",
            "sms_code_sent",
        ]


async def test_a_slow_provider_that_answers_in_time_delivers(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider, "slow") as (s, backend):
        reply, took = await backend.send_code()
        assert reply.status == 202 and 1.0 <= took < 3.0
        [row] = await backend.outbox()
        assert row.status == "sent" and len(s.received) == 1


# --- refused, down, unknown -------------------------------------------------------------------


async def test_a_refused_code_is_not_retried_and_answers_sms_not_sent(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider, "refuse") as (s, backend):
        call_id = int((await open_call(backend.api, "1700000000.1")).body["call_id"])
        reply, _ = await backend.send_code(call_id)
        assert (reply.status, reply.error_code()) == (424, "sms_not_sent")
        assert len(s.received) == 1  # a refusal is final
        [row] = await backend.outbox()
        error = "twilio_21211" if provider == "twilio" else "http_400"
        assert (row.status, attempts(row), row.sent_at) == (
            "refused",
            [("refused", 400, error)],
            None,
        )
        events = await backend.events(call_id)
        assert [(e["name"], e["detail"].get("sms")) for e in events] == [
            ("sms_code_sent", None),
            ("sms_code_not_sent", "refused"),
        ]


async def test_wrong_credentials_are_a_refusal_too(tmp_path: Path, database_url: str) -> None:
    async with standing_in("twilio") as stand_in:
        wrong = TwilioConfig(
            ACCOUNT_SID, "not-the-token", from_number=SENDER_ID, api_url=stand_in.url
        )
        async with backend_sending_by(tmp_path, database_url, "twilio", wrong) as backend:
            reply, _ = await backend.send_code()
            assert reply.error_code() == "sms_not_sent"
            [row] = await backend.outbox()
            assert attempts(row) == [("refused", 401, "twilio_20003")]


async def test_a_provider_down_is_tried_again_and_a_later_acceptance_delivers(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider, "down", "down", "accept") as (
        stand_in,
        backend,
    ):
        reply, took = await backend.send_code()
        assert reply.status == 202 and took < 3.0
        [row] = await backend.outbox()
        error = "twilio_20503" if provider == "twilio" else "http_503"
        assert attempts(row) == [
            ("not_accepted", 503, error),
            ("not_accepted", 503, error),
            ("accepted", 201 if provider == "twilio" else 202, None),
        ]
        assert row.status == "sent" and len(stand_in.received) == 3
        # The same message each time: one code, one idempotency key.
        assert len({r.code for r in stand_in.received}) == 1
        if provider == "webhook":
            assert len({r.headers["Idempotency-Key"] for r in stand_in.received}) == 1


async def test_a_provider_that_stays_down_is_given_up_within_the_send_time(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider, "down") as (s, backend):
        reply, took = await backend.send_code()
        assert reply.error_code() == "sms_not_sent" and took < 3.5
        [row] = await backend.outbox()
        assert row.status == "not_sent" and 2 <= len(row.attempts) <= 4
        assert {a["outcome"] for a in row.attempts} == {"not_accepted"}
        # Every request that reached the provider is on the row; on a loaded machine the last
        # attempt's connection can time out inside what is left of the send time, before it
        # reaches the provider: such an attempt has no HTTP status and names the timeout.
        reached = [a for a in row.attempts if a["status"] is not None]
        assert len(reached) == len(s.received) >= 2
        assert all("Timeout" in a["error"] for a in row.attempts if a["status"] is None)


async def test_too_many_requests_waits_as_twilio_asks(tmp_path: Path, database_url: str) -> None:
    async with provider_and_backend(tmp_path, database_url, "twilio", "busy", "accept") as (
        stand_in,
        backend,
    ):
        reply, _ = await backend.send_code()
        assert reply.status == 202
        first, second = stand_in.received
        assert second.at - first.at >= 1.0  # Retry-After: 1
        [row] = await backend.outbox()
        assert attempts(row) == [("not_accepted", 429, "twilio_20429"), ("accepted", 201, None)]


async def test_connection_refused_is_tried_again_then_not_sent(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    gateway = StandIn(provider).gateway(refusing_url())
    async with backend_sending_by(tmp_path, database_url, provider, gateway) as backend:
        reply, took = await backend.send_code()
        assert reply.error_code() == "sms_not_sent" and took < 3.5
        [row] = await backend.outbox()
        assert row.status == "not_sent" and len(row.attempts) >= 2
        assert set(attempts(row)) == {("not_accepted", None, "ClientConnectorError")}


async def test_a_server_error_may_have_sent_it_so_it_is_not_resent(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider, "fail", "accept") as (
        stand_in,
        backend,
    ):
        reply, _ = await backend.send_code()
        assert reply.status == 202  # it may arrive: the caller is asked for it
        [row] = await backend.outbox()
        error = "twilio_20500" if provider == "twilio" else "http_500"
        assert (row.status, attempts(row)) == ("unknown", [("unknown", 500, error)])
        assert len(stand_in.received) == 1


async def test_a_provider_that_never_answers_is_recorded_unknown_and_never_resent(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    async with provider_and_backend(tmp_path, database_url, provider, "hang") as (s, backend):
        with capture_logs() as logs:
            reply, took = await backend.send_code()
        assert reply.status == 202 and 2.5 < took < 3.5  # the send time, 3 s, and no more
        [row] = await backend.outbox()
        assert (row.status, row.sent_at) == ("unknown", None)
        [(outcome, status, error)] = attempts(row)
        assert (outcome, status) == ("unknown", None) and "Timeout" in error
        await asyncio.sleep(0.5)
        assert len(s.received) == 1  # never sent again
        code = s.received[0].code
        assert code is not None and code not in json.dumps(logs, default=str)
        assert code not in await database_text(backend.db)


async def test_each_request_sends_once(tmp_path: Path, database_url: str) -> None:
    async with provider_and_backend(tmp_path, database_url, "webhook") as (stand_in, backend):
        calls = [
            int((await open_call(backend.api, f"1700000000.{n}")).body["call_id"]) for n in range(3)
        ]
        replies = await asyncio.gather(*(backend.send_code(call_id) for call_id in calls))
        assert [reply.status for reply, _ in replies] == [202] * 3
        keys = [r.headers["Idempotency-Key"] for r in stand_in.received]
        rows = await backend.outbox()
        assert sorted(keys) == sorted(f"ivrs-sms-{row.id}" for row in rows) and len(rows) == 3
