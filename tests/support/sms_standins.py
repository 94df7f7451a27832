"""Local stand-ins for the SMS providers on loopback: one speaking Twilio's documented
Messages API, one the webhook contract of docs/operations.md ("SMS"), each following a script
(accept, refuse, down, hang, ...) and keeping what it received."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from backend.sms.config import SmsGateway, TwilioConfig, WebhookConfig
from tests.support.api import MOBILE

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-" + "7" * 14
WEBHOOK_TOKEN = "webhook-token-" + "9" * 18
SENDER_ID = "+85230001234"
E164 = "+852" + MOBILE
HANG = 30.0  # seconds a hanging provider keeps the request


@dataclass
class Received:
    at: float  # time.monotonic()
    fields: dict[str, Any]  # Twilio's form, or the webhook's JSON
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        text = self.fields.get("Body") or self.fields.get("text") or ""
        match = re.search(r"code is (\d{6})", text)
        return match.group(1) if match else None


@dataclass
class StandIn:
    """A provider on 127.0.0.1 that answers the n-th request as `script[n]` says (the last
    entry repeats): "accept", "refuse" (400), "busy" (429, Retry-After 1), "down" (503), "fail"
    (500), "hang" (no answer for 30 s) or "slow" (accept after 1 s)."""

    provider: str  # "twilio" | "webhook"
    script: list[str] = field(default_factory=lambda: ["accept"])
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def gateway(self, url: str | None = None) -> SmsGateway:
        base = url or self.url
        if self.provider == "twilio":
            return TwilioConfig(ACCOUNT_SID, AUTH_TOKEN, from_number=SENDER_ID, api_url=base)
        return WebhookConfig(f"{base}/sms", WEBHOOK_TOKEN)

    async def handle(self, request: web.Request) -> web.Response:
        if self.provider == "twilio":
            fields: dict[str, Any] = dict(await request.post())
        else:
            fields = await request.json()
        self.received.append(Received(time.monotonic(), fields, dict(request.headers)))
        if refusal := self.refusal(request, fields):
            return refusal
        behaviour = self.script[min(len(self.received), len(self.script)) - 1]
        if behaviour == "hang":
            await asyncio.sleep(HANG)
        if behaviour == "slow":
            await asyncio.sleep(1.0)
        if behaviour in ("accept", "slow"):
            return self.accepted(fields)
        status, code = {"refuse": (400, 21211), "busy": (429, 20429), "down": (503, 20503)}.get(
            behaviour, (500, 20500)
        )
        headers = {"Retry-After": "1"} if status == 429 else {}
        return self.error(status, code, f"error {code} about {fields}", headers)

    def refusal(self, request: web.Request, fields: dict[str, Any]) -> web.Response | None:
        """What the real provider would refuse whatever the script says: wrong credentials or
        a request without the fields its documentation requires."""
        if self.provider == "twilio":
            basic = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {basic}":
                return self.error(401, 20003, "Authenticate")
            if request.match_info["sid"] != ACCOUNT_SID:
                return self.error(404, 20404, "The requested resource was not found")
            if not fields.get("To") or not fields.get("Body") or not fields.get("From"):
                return self.error(400, 21604, "A 'To' phone number is required.")
        else:
            if request.headers.get("Authorization") != f"Bearer {WEBHOOK_TOKEN}":
                return web.json_response({"error": "unauthorized"}, status=401)
            if not request.headers.get("Idempotency-Key") or not fields.get("to"):
                return web.json_response({"error": "bad request"}, status=400)
        return None

    def accepted(self, fields: dict[str, Any]) -> web.Response:
        sid = "SM" + secrets.token_hex(16)
        if self.provider == "webhook":
            return web.json_response({"id": sid}, status=202)
        # Twilio's 201 Created echoes the message, its body (the code) included.
        message = {"sid": sid, "status": "queued", "to": fields["To"], "body": fields["Body"]}
        return web.json_response(message | {"account_sid": ACCOUNT_SID}, status=201)

    def error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        if self.provider == "webhook":
            return web.json_response({"error": message}, status=status, headers=headers)
        body = {"code": code, "message": message, "more_info": "", "status": status}
        return web.json_response(body, status=status, headers=headers)


@asynccontextmanager
async def standing_in(provider: str, *script: str) -> AsyncIterator[StandIn]:
    stand_in = StandIn(provider, list(script) or ["accept"])
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", stand_in.handle)
    app.router.add_post("/sms", stand_in.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield stand_in
    finally:
        await runner.cleanup()
