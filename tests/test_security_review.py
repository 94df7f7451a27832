"""The hostile review's findings one request at a time (docs/security.md; the concurrency rows
are tests/test_security_concurrency.py): the real HTTP API on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from backend.api import DATABASE
from backend.app import RunningBackend
from backend.models import Account, LoginSession
from tests.support.databases import DATABASES
from tests.support.truckers import MakeTrucker, TestClock, Trucker


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Api:
    """The service token's view of /v1, as the IVR has it."""

    def __init__(self, backend: RunningBackend, http: aiohttp.ClientSession) -> None:
        self.url = backend.url
        self.http = http
        self.token = backend.settings.api_token

    async def request(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} | {
            k.replace("_", "-"): v for k, v in headers.items()
        }
        async with self.http.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            text = await response.text()
            return response.status, (await response.json()) if text else None

    async def open_call(self, uniqueid: str, **more: Any) -> int:
        status, body = await self.request(
            "POST", "/v1/calls", {"uniqueid": uniqueid, "hotline": "1830000", **more}
        )
        assert status in (200, 201), body
        return int(body["call_id"])

    async def login(self, trucker: Trucker, call_id: int | None) -> str:
        attempt = {
            "account": trucker.account,
            "password": trucker.password,
            "token_code": trucker.code(),
            "call_id": call_id,
        }
        status, body = await self.request("POST", "/v1/sessions", attempt)
        assert status == 200, body
        return str(body["session"]["token"])

    async def bundle(
        self,
        trucker: Trucker,
        call_id: int | None,
        key: str,
        ccrns: list[str] | None = None,
        **h: str,
    ) -> tuple[int, Any]:
        submission = {
            "account": trucker.account,
            "vehicle_mark": trucker.vehicle,
            "numbers": ccrns or trucker.ccrns[:1],
            "call_id": call_id,
        }
        return await self.request("POST", "/v1/bundles", submission, Idempotency_Key=key, **h)


@pytest.fixture
async def api(backend: RunningBackend) -> Any:
    async with aiohttp.ClientSession() as http:
        yield Api(backend, http)


def code(reply: tuple[int, Any]) -> tuple[int, str]:
    status, body = reply
    return status, (body or {}).get("error", {}).get("code", "ok")


# --- row 6: bundling, cancelling and enquiries need the login's session -----------------------


async def test_the_service_token_alone_bundles_nothing(api: Api, make_trucker: MakeTrucker) -> None:
    trucker = await make_trucker(cargo=1)
    call_id = await api.open_call("1700000000.1")
    assert code(await api.bundle(trucker, call_id, "k1")) == (401, "session_required")
    cancel = {"account": trucker.account, "vehicle_mark": "AB1234", "ccrn": None}
    reply = await api.request("POST", "/v1/unbundle", cancel, Idempotency_Key="u1")
    assert code(reply) == (401, "session_required")
    reply = await api.request("GET", f"/v1/bundles?account={trucker.account}")
    assert code(reply) == (401, "session_required")


async def test_a_session_works_for_its_account_and_call_only_and_ends_with_the_call(
    api: Api, make_trucker: MakeTrucker, clock: TestClock
) -> None:
    trucker, other = await make_trucker(cargo=2), await make_trucker(cargo=1)
    call_id = await api.open_call("1700000000.1")
    other_call = await api.open_call("1700000000.2")
    session = await api.login(trucker, call_id)
    theirs = {"Login_Session": session}

    assert code(await api.bundle(other, call_id, "k0", **theirs)) == (401, "session_required")
    assert code(await api.bundle(trucker, other_call, "k1", **theirs)) == (401, "session_required")
    assert code(await api.bundle(trucker, call_id, "k2", **theirs)) == (201, "ok")
    listed = await api.request("GET", f"/v1/bundles?account={trucker.account}", **theirs)
    assert code(listed) == (200, "ok") and len(listed[1]["bundles"]) == 1
    cancel = {
        "account": trucker.account,
        "vehicle_mark": "AB1234",
        "ccrn": None,
        "call_id": call_id,
    }
    cancelled = await api.request("POST", "/v1/unbundle", cancel, Idempotency_Key="u1", **theirs)
    assert code(cancelled) == (200, "ok")

    ending = {"outcome": "completed", "last_stage": "menu"}
    assert (await api.request("POST", f"/v1/calls/{call_id}/end", ending))[0] == 200
    ended = await api.bundle(trucker, call_id, "k3", trucker.ccrns[1:], **theirs)
    assert code(ended) == (401, "session_required")

    # A session of a call still going runs out after its lifetime.
    session = await api.login(trucker, other_call)
    clock.advance(31 * 60)
    late = await api.bundle(trucker, other_call, "k4", trucker.ccrns[1:], Login_Session=session)
    assert code(late) == (401, "session_required")


async def test_a_login_clears_its_accounts_expired_sessions_only(
    api: Api, backend: RunningBackend, make_trucker: MakeTrucker, clock: TestClock
) -> None:
    trucker, other = await make_trucker(), await make_trucker()
    call_id = await api.open_call("1700000000.1")
    await api.login(trucker, call_id)
    await api.login(other, call_id)
    clock.advance(31 * 60)  # both sessions expired
    await api.login(trucker, call_id)
    async with backend.app[DATABASE].sessions() as session:
        rows = await session.execute(
            select(Account.number, func.count())
            .join(LoginSession, LoginSession.account_id == Account.id)
            .group_by(Account.number)
        )
        assert {number: n for number, n in rows} == {trucker.account: 1, other.account: 1}


async def test_a_session_ends_with_the_hang_up_too(api: Api, make_trucker: MakeTrucker) -> None:
    trucker = await make_trucker(cargo=1)
    call_id = await api.open_call("1700000000.1")
    session = await api.login(trucker, call_id)
    hang_up = {"uniqueid": "1700000000.1", "cause": "16"}
    assert (await api.request("POST", "/v1/calls/hangup", hang_up))[0] == 200
    reply = await api.bundle(trucker, call_id, "k1", Login_Session=session)
    assert code(reply) == (401, "session_required")


# --- row 7: numbers JSON cannot carry -----------------------------------------------------


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e400", "-2.5E+999", "9" * 400 + ".5"]
)
async def test_a_number_json_cannot_carry_is_refused(api: Api, number: str) -> None:
    call_id = await api.open_call("1700000000.1")
    at = '"at": "2026-12-06T01:00:00+00:00"'
    event = f'{{{at}, "kind": "stage", "name": "x", "detail": {{"v": {number}}}}}'
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}
    for path, body in (
        (f"/v1/calls/{call_id}/events", f'{{"events": [{event}]}}'),
        (f"/v1/calls/{call_id}/end", f'{{"outcome": "x", "last_stage": "y", "events": [{event}]}}'),
    ):
        async with api.http.post(api.url + path, data=body, headers=headers) as response:
            assert response.status == 422, await response.text()
            assert "finite" in (await response.json())["error"]["message"]
    status, call = await api.request("GET", f"/v1/calls/{call_id}")
    assert status == 200 and call["events"] == []  # valid JSON, nothing stored


@pytest.mark.parametrize(
    ("at", "status"),
    [
        ("0001-01-01T00:00:00+14:00", 422),  # 0000-12-31 in UTC: no datetime holds it
        ("9999-12-31T23:00:00-01:00", 422),  # 10000-01-01 in UTC
        ("0001-01-01T00:00:00+00:00", 200),  # the first and last moments a datetime holds
        ("9999-12-31T23:59:59.999999+00:00", 200),
    ],
)
async def test_a_time_with_no_utc_equivalent_is_refused(api: Api, at: str, status: int) -> None:
    call_id = await api.open_call("1700000000.1")
    event = {"at": at, "kind": "stage", "name": "x"}
    seen, body = await api.request("POST", f"/v1/calls/{call_id}/events", {"events": [event]})
    assert seen == status, body
    stored = (await api.request("GET", f"/v1/calls/{call_id}"))[1]["events"]
    assert len(stored) == (1 if status == 200 else 0)


# --- row 10: an Idempotency-Key names one submission ---------------------------------------


async def test_a_key_reused_with_other_ccrns_is_refused(
    api: Api, make_trucker: MakeTrucker
) -> None:
    trucker = await make_trucker(cargo=2)
    call_id = await api.open_call("1700000000.1")
    session = {"Login_Session": await api.login(trucker, call_id)}
    first, second = trucker.ccrns
    assert code(await api.bundle(trucker, call_id, "k1", [first], **session)) == (201, "ok")
    assert code(await api.bundle(trucker, call_id, "k1", [first], **session)) == (200, "ok")
    other = await api.bundle(trucker, call_id, "k1", [second], **session)
    assert code(other) == (422, "invalid_request") and "different bundle" in str(other[1])
    more = await api.bundle(trucker, call_id, "k1", [first, second], **session)
    assert code(more) == (422, "invalid_request")
    assert code(await api.bundle(trucker, call_id, "k2", [second], **session)) == (201, "ok")
