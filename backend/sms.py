"""SMS: the outbox and the pluggable sender that delivers it.

A message is queued (`queue`) as an `sms_outbox` row in the transaction that decided it, so an
SMS exists only for work that was committed; it is delivered (`deliver`) right after the
commit. A failed delivery leaves the row unsent and is logged without the text. A code is
stored masked ("******"): the clear text goes to the sender and nowhere else.

Senders implement `SmsSender`. `LogSender` (the default) only records that a message went out;
`MemorySender` keeps messages in the process, for tests and the demo:
`sender.last_code("91234567")` is the last code sent to that mobile.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import phonenumbers
import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import SmsKind, SmsOutbox
from backend.timezones import HONG_KONG

if TYPE_CHECKING:
    from backend.database import Database

log = structlog.get_logger(__name__)

CODE_MASK = "******"
# Seconds. Below the IVR's backend timeout (5 s): a stuck gateway must not make the caller
# hear "service unavailable"; the message then stays unsent in the outbox.
SEND_TIMEOUT = 3.0
CODE_TEXT = "Your Road Cargo IVRS code is {code}"
BUNDLE_TEXT = "Bundled {count} to vehicle {mark}, reference {reference}, may cross from {time}."
_CODE_IN_TEXT = re.compile(r"\bcode is (\d{4,8})\b")

# The kind of the message being sent, for senders that log or route by kind; the sender's
# signature stays `send(mobile, text)`.
_KIND: ContextVar[str] = ContextVar("sms_kind", default="other")


@runtime_checkable
class SmsSender(Protocol):
    async def send(self, mobile: str, text: str) -> None:
        """Deliver `text` to `mobile` (E.164, "+852..."); raise when it was not accepted."""


def current_kind() -> str:
    """The kind ("sms_code", "bundle_confirmation") of the message a sender is sending."""
    return _KIND.get()


@contextmanager
def sending(kind: str) -> Iterator[None]:
    """Within: `current_kind()` is `kind` (the outbox sets it around each delivery)."""
    token = _KIND.set(kind)
    try:
        yield
    finally:
        _KIND.reset(token)


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


@dataclass
class MemorySender:
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

    def last_code(self, mobile: str) -> str | None:
        """The code of the last SMS code sent to `mobile` (8 digits or E.164), if any."""
        for message in reversed(self.messages(mobile)):
            if message.kind == "sms_code" and (match := _CODE_IN_TEXT.search(message.text)):
                return match.group(1)
        return None

    def clear(self) -> None:
        self.sent.clear()


def sender_for(name: str) -> SmsSender:
    """The sender a setting names (`IVRS_SMS_SENDER`)."""
    if name == "log":
        return LogSender()
    if name == "memory":
        return MemorySender()
    raise ValueError(f"unknown SMS sender: {name!r}")


# --- texts ----------------------------------------------------------------------------------


def code_text(code: str) -> str:
    return CODE_TEXT.format(code=code)


def bundle_text(count: int, mark: str, reference: str, earliest_crossing: datetime) -> str:
    return BUNDLE_TEXT.format(
        count=f"{count} CCRN" if count == 1 else f"{count} CCRNs",
        mark=mark,
        reference=reference,
        time=earliest_crossing.astimezone(HONG_KONG).strftime("%H:%M"),
    )


# --- numbers --------------------------------------------------------------------------------


def e164(mobile: str) -> str | None:
    """A Hong Kong number, given as 8 digits or in E.164, in E.164 ("+85291234567")."""
    try:
        number = phonenumbers.parse(mobile, "HK")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def last4(mobile: str) -> str:
    """What logs and call events may show of a mobile number."""
    return mobile[-4:]


# --- the outbox -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A queued message waiting for its transaction to commit. `text` is what the phone
    receives; the row holds the masked text."""

    row: SmsOutbox
    text: str = field(repr=False)


def queue(
    session: AsyncSession,
    now: datetime,
    mobile: str,
    kind: SmsKind,
    text: str,
    secret: str | None = None,
) -> Outgoing | None:
    """Add a message to the outbox in `session`'s transaction; `secret` (a code in `text`) is
    stored as "******". None when `mobile` is not a number an SMS can reach."""
    to = e164(mobile)
    if to is None:
        log.warning("sms_not_queued", reason="mobile_invalid", mobile_last4=last4(mobile))
        return None
    stored = text.replace(secret, CODE_MASK) if secret else text
    row = SmsOutbox(mobile=to, kind=kind, text=stored, created_at=now)
    session.add(row)
    return Outgoing(row, text)


async def deliver(db: Database, messages: Iterable[Outgoing | None]) -> None:
    """Send committed messages through the database's sender; mark each one sent. A failure
    is logged (never with the text) and leaves the row unsent."""
    for message in messages:
        if message is None:
            continue
        row = message.row
        try:
            with sending(row.kind):
                async with asyncio.timeout(SEND_TIMEOUT):
                    await db.sms_sender.send(row.mobile, message.text)
        except Exception as e:  # any sender failure: the row stays unsent
            log.warning(
                "sms_failed",
                outbox_id=row.id,
                kind=row.kind,
                mobile_last4=last4(row.mobile),
                error=type(e).__name__,  # never str(e): it may quote the text
            )
            continue
        async with db.sessions.begin() as session:
            await session.execute(
                update(SmsOutbox)
                .where(SmsOutbox.id == row.id)
                .values(sent_at=db.now())
                .execution_options(synchronize_session=False)
            )
