"""Senders that hand the message to a provider over HTTPS: Twilio's Messages resource and a
generic webhook. One attempt per `send` (the outbox retries), classified by what the provider's
documentation says the answer proves:

- Twilio (https://www.twilio.com/docs/messaging/api/message-resource): 2xx (201 Created, with
  the message's `sid`): accepted. 429 (error 20429: "never processed and is always safe to
  retry") and 503 (error 20503: "temporarily unavailable", retry with back-off): not accepted.
  Any other 4xx (e.g. 21211, an invalid `To`; 20003, wrong credentials): refused. 500 and
  other 5xx (error 20500: retrying a send "may" send it twice): unknown.
- The webhook (docs/operations.md, "SMS"): 2xx accepted; 429 or 503 not accepted; any other
  4xx refused; anything else unknown. Each message carries an `Idempotency-Key` unique to its
  outbox row.

No connection, or one that failed before the request went out: not accepted. A timeout or a
broken connection after it went out: unknown (never sent again). A new connection per message
(no keep-alive): a pooled connection the provider closed meanwhile would break after the
request went out, an unknown outcome for no reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from backend.sms.senders import (
    NotAccepted,
    Receipt,
    Refused,
    Unknown,
    current_kind,
    current_reference,
    time_left,
)

if TYPE_CHECKING:
    from backend.sms.config import TwilioConfig, WebhookConfig

CONNECT_SECONDS = 1.0  # a provider that drops the connection attempt: try again meanwhile
NOT_ACCEPTED_STATUSES = frozenset({429, 503})
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]  # the JSON object answered, else {}
    retry_after: float | None


async def post(url: str, **request: Any) -> Answer:
    """One POST, over within `time_left()`. Raises `NotAccepted` when the request never went
    out, `Unknown` when it went out and no answer came."""
    went_out = False

    async def on_headers_sent(*_: Any) -> None:
        nonlocal went_out
        went_out = True

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    left = time_left()
    timeout = aiohttp.ClientTimeout(total=left, sock_connect=min(left, CONNECT_SECONDS))
    try:
        async with (
            aiohttp.ClientSession(
                timeout=timeout,
                trace_configs=[trace],
                connector=aiohttp.TCPConnector(force_close=True),
            ) as session,
            session.post(url, allow_redirects=False, **request) as response,
        ):
            raw = await response.content.read(MAX_BODY_BYTES)
            return Answer(response.status, _json_object(raw), _retry_after(response))
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        if went_out:
            raise Unknown(type(e).__name__) from None
        raise NotAccepted(type(e).__name__) from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def classify(answer: Answer, error: str, ref: str | None) -> Receipt:
    """The receipt of an accepted message; otherwise raise what the status proves."""
    status = answer.status
    if 200 <= status < 300:
        return Receipt(status, ref)
    if status in NOT_ACCEPTED_STATUSES:
        raise NotAccepted(error, status=status, retry_after=answer.retry_after)
    if 300 <= status < 500:  # a redirect too: the configured URL is not where messages go
        raise Refused(error, status=status)
    raise Unknown(error, status=status)


class TwilioSender:
    """Twilio's Messages resource: a form POST with HTTP Basic auth (Account SID, auth token)."""

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self.url = (
            f"{config.api_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        )
        self._auth = aiohttp.encode_basic_auth(config.account_sid, config.auth_token)

    async def send(self, mobile: str, text: str) -> Receipt:
        config = self.config
        form = {"To": mobile, "Body": text}
        if config.messaging_service_sid:
            form["MessagingServiceSid"] = config.messaging_service_sid
        else:
            form["From"] = config.from_number or ""
        answer = await post(self.url, data=form, headers={"Authorization": self._auth})
        code = answer.body.get("code")  # Twilio's error code: 20429, 21211, ...
        error = f"twilio_{code}" if isinstance(code, int) else f"http_{answer.status}"
        sid = answer.body.get("sid")
        return classify(answer, error, sid if isinstance(sid, str) else None)


class WebhookSender:
    """A generic HTTPS webhook: a JSON POST {"to", "text", "kind", "reference"} with a bearer
    token and an Idempotency-Key; an answer's JSON "id", if any, is kept as its reference."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    async def send(self, mobile: str, text: str) -> Receipt:
        reference = current_reference()
        headers = {"Authorization": f"Bearer {self.config.token}"}
        if reference:
            headers["Idempotency-Key"] = reference
        body = {"to": mobile, "text": text, "kind": current_kind(), "reference": reference}
        answer = await post(self.config.url, json=body, headers=headers)
        ref = answer.body.get("id")
        return classify(answer, f"http_{answer.status}", str(ref) if ref is not None else None)
