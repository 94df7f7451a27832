"""The backend's JSON API as the IVR uses it, for the API tests: a real HTTP client whose every
request and reply is checked against backend/openapi.yaml, a clock the test moves, and the
service (client, database, clock) with a trucker's account and token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS31Validator
from sqlalchemy import select

import otp
from backend import admin, sessions
from backend.database import Database
from backend.models import Account

SPEC_FILE = Path(__file__).parents[2] / "backend" / "openapi.yaml"
SPEC = OpenAPI.from_file_path(str(SPEC_FILE))
ERROR_SCHEMA = OAS31Validator(
    yaml.safe_load(SPEC_FILE.read_text())["components"]["schemas"]["Error"]
)
API_TOKEN = "test-api-token"
START = datetime(2025, 3, 3, 2, 0, 0, tzinfo=UTC)  # 10:00 in Hong Kong
ACCOUNT = "12345678"
PASSWORD = "246810"
MARK = "AB1234"
MOBILE = "91234567"


class Clock:
    """The backend's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Reply:
    status: int
    body: Any

    def error_code(self) -> str:
        return self.body["error"]["code"]


@dataclass
class Api:
    """A real HTTP client; every reply is checked against openapi.yaml (openapi-core), and every
    request the server accepted must be valid by the spec too."""

    http: aiohttp.ClientSession
    base_url: str
    # Set: bundling, cancelling and enquiries carry a login session of their account, as if the
    # IVR had logged in (the login's own tests: test_security_review.py).
    db: Database | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        token: str | None = API_TOKEN,
    ) -> Reply:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if path in SESSION_PATHS and sessions.HEADER not in headers and self.db is not None:
            headers |= await login_session(self.db, body, params)
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.base_url + path, data=data, headers=headers, params=params
        ) as resp:
            content, status, content_type = await resp.read(), resp.status, resp.content_type
        request = MockRequest(
            "http://localhost", method, path, args=params, headers=headers, data=data
        )
        response = MockResponse(content, status_code=status, content_type=content_type)
        try:
            SPEC.validate_response(request, response)
        except (PathNotFound, OperationNotFound):
            assert status in (404, 405), f"{method} {path} is not in openapi.yaml"
        if status < 400:
            SPEC.validate_request(request)
        else:
            ERROR_SCHEMA.validate(json.loads(content))
        return Reply(status, json.loads(content) if content else None)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body=body, **kw)

    async def login(self, code: str, password: str = PASSWORD, account: str = ACCOUNT) -> Reply:
        attempt = {"account": account, "password": password, "token_code": code}
        return await self.post("/v1/sessions", attempt)

    async def bundle(
        self, numbers: list[str], key: str, mark: str = MARK, account: str = ACCOUNT, **kw: Any
    ) -> Reply:
        submission = {"account": account, "vehicle_mark": mark, "numbers": numbers, **kw}
        return await self.post("/v1/bundles", submission, headers={"Idempotency-Key": key})


SESSION_PATHS = ("/v1/bundles", "/v1/unbundle")


async def login_session(db: Database, body: Any, params: dict[str, str] | None) -> dict[str, str]:
    """A login session of the request's account (none for an unknown account)."""
    fields = (body if isinstance(body, dict) else None) or params or {}
    async with db.sessions() as session:
        account = await session.scalar(
            select(Account).where(Account.number == fields.get("account"))
        )
    if account is None:
        return {}
    call_id = fields.get("call_id") if isinstance(fields.get("call_id"), int) else None
    async with db.sessions.begin() as session:
        token, _ = await sessions.open_session(session, account.id, call_id, db.now())
    return {sessions.HEADER: token}


@dataclass
class Service:
    api: Api
    db: Database
    clock: Clock

    async def trucker(self, number: str = ACCOUNT, **token: Any) -> str:
        """An account with a hardware token; returns the token seed."""
        await admin.create_account(self.db, number, PASSWORD)
        return await admin.add_token(self.db, number, **token)

    def code(self, seed: str, profile: otp.TokenProfile = otp.HARDWARE, **shift: float) -> str:
        return otp.current_code(seed, profile, self.clock() + timedelta(**shift))


async def open_call(api: Api, uniqueid: str = "1700000000.1") -> Reply:
    return await api.post(
        "/v1/calls",
        {"uniqueid": uniqueid, "hotline": "39023333", "caller_id": "91234567", "language": "en"},
    )
