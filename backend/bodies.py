"""The JSON API's request bodies (pydantic, strict), and how a request's body is read: every
refusal is a 422 `invalid_request` that names the field, never echoing the input."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from ami_client import CHANNEL_NAME
from backend import bundling
from backend.errors import BackendError

# Ids and counts are INTEGER columns: 32 bits on PostgreSQL. A larger number is refused as
# input (or is an unknown id in a path) before it reaches the database, which would fail.
MAX_INTEGER = 2**31 - 1


BodyT = TypeVar("BodyT", bound=BaseModel)


class _Body(BaseModel):
    # strict: no silent "12" -> 12 coercions; JSON mode still reads ISO 8601 times.
    model_config = ConfigDict(strict=True)


def _whole_number(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer, so the API takes it as 2 (2.5 and "2" are still
    refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity, yet its parsers make them of NaN, Infinity and numbers
    beyond a double's range: stored, they made a call's JSON invalid (and PostgreSQL refuses).
    Only an event's detail holds numbers of any kind (the typed ones are integers, which refuse
    them), so it alone is walked, as it is validated."""
    if isinstance(value, dict):
        _finite(list(value.values()))
    elif isinstance(value, list):
        for item in value:
            _finite(item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(NOT_FINITE)
    return value


NOT_FINITE = "Numbers must be finite (no NaN, Infinity or numbers beyond a double's range)."
Integer = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=MAX_INTEGER)]
CallId = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=MAX_INTEGER)]
# Times are stored in UTC: one with no UTC time a datetime can hold (0001-01-01T00:00+14:00)
# is refused, by bounds pydantic's core compares (not a call to Python for each of 40 events).
Moment = Annotated[
    AwareDatetime, Field(ge=datetime.min.replace(tzinfo=UTC), le=datetime.max.replace(tzinfo=UTC))
]


class CallOpening(_Body):
    uniqueid: str = Field(min_length=1, max_length=64)
    hotline: str = Field(min_length=1, max_length=32)
    caller_id: str | None = Field(default=None, max_length=64)
    # Asterisk's form only: the console hands it to AMI (listen in), docs/security.md.
    channel: str | None = Field(default=None, max_length=128, pattern=f"^{CHANNEL_NAME}$")
    language: str | None = Field(default=None, max_length=8)


OPENINGS_PER_REQUEST = 200  # `POST /v1/calls/batch`: a burst's openings, sent together


class CallOpenings(_Body):
    calls: list[CallOpening] = Field(min_length=1, max_length=OPENINGS_PER_REQUEST)


class CallEventIn(_Body):
    at: Moment
    kind: Literal["prompt", "input", "backend", "stage", "error"]
    name: str = Field(min_length=1, max_length=64)
    detail: Annotated[dict[str, Any], AfterValidator(_finite)] = Field(default_factory=dict)
    duration_ms: Integer | None = None


class CallEvents(_Body):
    events: list[CallEventIn] = Field(max_length=1000)


class CallEnding(_Body):
    outcome: str = Field(min_length=1, max_length=64)
    last_stage: str = Field(min_length=1, max_length=64)
    account: str | None = Field(default=None, max_length=8)
    language: str | None = Field(default=None, min_length=2, max_length=8)  # chosen in the call
    events: list[CallEventIn] = Field(default=[], max_length=1000)  # the call's last ones


class HangUp(_Body):
    uniqueid: str = Field(min_length=1, max_length=64)
    cause: str | None = Field(default=None, max_length=64)  # Asterisk's HANGUPCAUSE


class LoginAttempt(_Body):
    account: str = Field(max_length=32)
    # SecretStr: a repr or a log line shows '**********', never the digits.
    password: SecretStr = Field(max_length=64)
    token_code: SecretStr = Field(max_length=16)
    call_id: CallId | None = None
    caller_id: str | None = Field(default=None, max_length=64)


class BundleSubmission(_Body):
    account: str = Field(max_length=32)
    vehicle_mark: str = Field(max_length=16)
    numbers: list[str] = Field(min_length=1, max_length=bundling.MAX_CCRNS)
    call_id: CallId | None = None


class MobileRegistration(_Body):
    # Any text: what is not an 8-digit Hong Kong mobile number is refused as mobile_invalid.
    mobile: str = Field(max_length=32)
    call_id: CallId | None = None


class MobileVerification(_Body):
    code: SecretStr = Field(max_length=16)
    call_id: CallId | None = None


class TermsAcceptanceIn(_Body):
    version: str = Field(min_length=1, max_length=32)
    call_id: CallId | None = None


class UnbundleRequest(_Body):
    account: str = Field(max_length=32)
    vehicle_mark: str = Field(max_length=16)
    ccrn: str | None = Field(max_length=16)  # required, null: every CCRN on the vehicle
    call_id: CallId | None = None


async def read_body(request: web.Request, model: type[BodyT]) -> BodyT:
    raw = await request.read()
    try:
        body = model.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors(include_input=False, include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise BackendError(
                "invalid_request", "The body is not valid JSON.", status=400
            ) from None
        message = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}"
            for err in errors[:3]
        )
        raise BackendError("invalid_request", message) from None
    # JSON can carry a NUL only as the escape \u0000 (a raw one is refused above): a body
    # without one is not walked (an events batch: ~40 dicts).
    if b"\\u0000" in raw and has_nul(body):
        raise BackendError("invalid_request", NUL_REFUSED)
    return body


NUL_REFUSED = "Text must not contain NUL characters."


def has_nul(value: Any) -> bool:
    """PostgreSQL text cannot hold a NUL character: input with one is refused (on SQLite too),
    rather than failing in the database."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False
