"""What a sender is, how it tells the outbox what became of a message, and the senders that need
no network: `LogSender` (records that a message went out), `MemorySender` (tests and the demo
read the messages in the process) and `FileSender` (tests in another process read them from a
file; it writes codes in clear, so it is for tests only).

A sender makes one attempt per `send`; the outbox (outbox.py) retries and records. `send`
returns a `Receipt` (or None) when the provider accepted the message, and otherwise raises:
- `Refused`: the provider answered that it will not send it (no retry);
- `NotAccepted`: provably never accepted (connection refused, an answer whose documentation
  says the request was not processed): the outbox may try again within its time;
- `Unknown`, or any other exception: it may have been accepted; never sent again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import structlog

from backend.sms.texts import e164, last4

log = structlog.get_logger("backend.sms")

_CODE_IN_TEXT = re.compile(r"\bcode is (\d{4,8})\b")


@dataclass(frozen=True)
class Receipt:
    """The provider accepted the message: its HTTP status and its id for the message."""

    status: int | None = None
    ref: str | None = None


class NotDelivered(Exception):  # noqa: N818 (an outcome, not a bug)
    """The message was not accepted, or may not have been. `error` is a short code (an
    exception's type, a provider's error code), never the provider's text, which may quote
    the message."""

    outcome = "unknown"

    def __init__(
        self, error: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after


class Refused(NotDelivered):
    outcome = "refused"


class NotAccepted(NotDelivered):
    outcome = "not_accepted"


class Unknown(NotDelivered):
    outcome = "unknown"


@runtime_checkable
class SmsSender(Protocol):
    async def send(self, mobile: str, text: str) -> Receipt | None:
        """One attempt to deliver `text` to `mobile` (E.164, "+852...")."""


# --- what is being sent: set by the outbox around each attempt ------------------------------


@dataclass(frozen=True)
class _Sending:
    kind: str = "other"
    reference: str | None = None  # unique per outbox row: an idempotency key for webhooks
    deadline: float | None = None  # the event loop's time by which an attempt must be over


NOT_SENDING = _Sending()
_SENDING: ContextVar[_Sending] = ContextVar("sms_sending", default=NOT_SENDING)  # noqa: B039 (frozen)


@contextmanager
def sending(
    kind: str, reference: str | None = None, deadline: float | None = None
) -> Iterator[None]:
    """Within: `current_kind()` is `kind`, `current_reference()` is `reference` and
    `time_left()` counts down to `deadline` (loop time)."""
    token = _SENDING.set(_Sending(kind, reference, deadline))
    try:
        yield
    finally:
        _SENDING.reset(token)


def current_kind() -> str:
    """The kind ("sms_code", "bundle_confirmation") of the message a sender is sending."""
    return _SENDING.get().kind


def current_reference() -> str | None:
    return _SENDING.get().reference


def time_left(default: float = 3.0) -> float:
    """Seconds the current attempt may still take (at least 10 ms)."""
    deadline = _SENDING.get().deadline
    if deadline is None:
        return default
    return max(0.01, deadline - asyncio.get_running_loop().time())


# --- senders without a network --------------------------------------------------------------


class LogSender:
    """Delivers nothing: records each delivery in the log, without its text (it may hold a
    code) and with the mobile's last 4 digits only."""

    def __init__(self) -> None:
        self.delivered = 0

    async def send(self, mobile: str, text: str) -> None:
        self.delivered += 1
        log.info("sms_sent", mobile_last4=last4(mobile), kind=current_kind())


@dataclass(frozen=True)
class SentSms:
    mobile: str  # E.164
    text: str
    kind: str


class _ReadsCodes(ABC):
    """`last_code` for senders that keep what they sent (`messages`)."""

    @abstractmethod
    def messages(self, mobile: str | None = None) -> list[SentSms]:
        """What the sender sent (to `mobile` only, when given), oldest first."""

    def last_code(self, mobile: str) -> str | None:
        """The code of the last SMS code sent to `mobile` (8 digits or E.164), if any."""
        for message in reversed(self.messages(mobile)):
            if message.kind == "sms_code" and (match := _CODE_IN_TEXT.search(message.text)):
                return match.group(1)
        return None


@dataclass
class MemorySender(_ReadsCodes):
    """Keeps every message in memory, for tests and the demo to read."""

    sent: list[SentSms] = field(default_factory=list)

    async def send(self, mobile: str, text: str) -> None:
        self.sent.append(SentSms(mobile, text, current_kind()))

    def messages(self, mobile: str | None = None) -> list[SentSms]:
        """Messages sent (to `mobile`: 8 digits or E.164), oldest first."""
        if mobile is None:
            return list(self.sent)
        wanted = e164(mobile) or mobile
        return [m for m in self.sent if m.mobile == wanted]

    def clear(self) -> None:
        self.sent.clear()


@dataclass
class FileSender(_ReadsCodes):
    """FOR TESTS ONLY (`IVRS_SMS_SENDER=file`): appends each message, code in clear, as a JSON
    line to `path`, where a test in another process (a real-Asterisk call) reads the code:
    `FileSender(path).last_code("91234567")`. Each line is one write in append mode, so
    several backend processes may share the file."""

    path: Path

    async def send(self, mobile: str, text: str) -> None:
        line = {"at": datetime.now(UTC).isoformat(), "mobile": mobile, "kind": current_kind()}
        data = (json.dumps(line | {"text": text}) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def messages(self, mobile: str | None = None) -> list[SentSms]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = [SentSms(m["mobile"], m["text"], m["kind"]) for m in map(json.loads, lines)]
        wanted = e164(mobile) or mobile if mobile else None
        return [m for m in found if wanted is None or m.mobile == wanted]
