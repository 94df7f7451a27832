"""The outbox: every SMS is queued (`queue`) as an `sms_outbox` row in the transaction that
decided it, so an SMS exists only for work that was committed, and delivered (`deliver`) right
after the commit by the configured sender: a code before the reply, a bundle's confirmation
after it (Database.after_reply).

Delivery takes at most `settings.sms_send_seconds`, retries included: a message is tried again
only while the provider provably did not accept it (senders.py), after a growing pause (or the
provider's Retry-After), and never once it may have been accepted. Every attempt is recorded on
the row (`attempts`), with the outcome (`status`): sent, refused, not_sent (never accepted in
time) or unknown (may have been accepted). A code is stored masked ("******"): the clear text
goes to the sender and nowhere else; logs and attempts hold error codes, never texts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy import Table, bindparam, insert, update

from backend.models import SmsKind, SmsOutbox, SmsStatus
from backend.sms.senders import NotDelivered, Receipt, sending
from backend.sms.texts import e164, last4

if TYPE_CHECKING:
    from backend.database import Database, Executor

log = structlog.get_logger("backend.sms")

CODE_MASK = "******"
FIRST_PAUSE = 0.2  # seconds before the 2nd attempt; doubled before each next one
MAX_ATTEMPTS = 4
MIN_ATTEMPT = 0.3  # no new attempt with less time left than this
# Of the send time, kept back from the sender's own deadline: the sender classifies its
# timeout itself (not accepted, or unknown) before the outbox has to cut it off.
GUARD = 0.2
# What each last outcome of the attempts makes of the message.
STATUS_OF: dict[str, SmsStatus] = {
    "accepted": "sent",
    "refused": "refused",
    "not_accepted": "not_sent",
    "unknown": "unknown",
}
# A message is one INSERT and its outcome one UPDATE, Core statements on the table built once
# (the ORM's flush, or an ORM update built at each call, costs more CPU than the statement).
OUTBOX_TABLE = cast(Table, SmsOutbox.__table__)
_QUEUE = insert(OUTBOX_TABLE).returning(OUTBOX_TABLE.c.id)
_RECORD = (
    update(OUTBOX_TABLE)
    .where(OUTBOX_TABLE.c.id == bindparam("row_id"), OUTBOX_TABLE.c.status == "pending")
    .values(
        status=bindparam("outcome"),
        attempts=bindparam("tried"),
        provider_ref=bindparam("ref"),
        sent_at=bindparam("sent"),
    )
)


@dataclass(frozen=True)
class Outgoing:
    """A queued message waiting for its transaction to commit. `text` is what the phone
    receives; the row holds the masked text."""

    row: SmsOutbox
    text: str = field(repr=False)


@dataclass(frozen=True)
class Delivery:
    status: SmsStatus
    attempts: list[dict[str, Any]]

    @property
    def failed(self) -> bool:
        """Certainly not sent: refused, or never accepted within the time."""
        return self.status in ("refused", "not_sent")

    @property
    def brief(self) -> dict[str, Any]:
        """For a call event: the outcome, how many attempts, the last error code."""
        return {
            "sms": self.status,
            "attempts": len(self.attempts),
            "error": self.attempts[-1]["error"],
        }


async def queue(
    session: Executor,
    now: datetime,
    mobile: str,
    kind: SmsKind,
    text: str,
    secret: str | None = None,
) -> Outgoing | None:
    """Add a message to the outbox in `session`'s transaction; `secret` (a code in `text`) is
    stored as "******". None when `mobile` is not a number an SMS can reach."""
    values = row_values(now, mobile, kind, text, secret)
    if values is None:
        return None
    row_id = (await session.execute(_QUEUE, values)).scalar_one()
    return Outgoing(SmsOutbox(id=row_id, **values), text)


def row_values(
    now: datetime, mobile: str, kind: SmsKind, text: str, secret: str | None = None
) -> dict[str, Any] | None:
    """The outbox row of a message (its code masked), for `queue` or a statement that inserts
    it with other rows; None when `mobile` is not a number an SMS can reach."""
    to = e164(mobile)
    if to is None:
        log.warning("sms_not_queued", reason="mobile_invalid", mobile_last4=last4(mobile))
        return None
    stored = text.replace(secret, CODE_MASK) if secret else text
    return {
        "mobile": to,
        "kind": kind,
        "text": stored,
        "created_at": now,
        "status": "pending",
        "attempts": [],
    }


async def deliver(db: Database, messages: Iterable[Outgoing | None]) -> list[Delivery]:
    """Deliver committed messages (each once, within its time) and record how it went."""
    return [await deliver_one(db, m) for m in messages if m is not None]


async def deliver_one(db: Database, message: Outgoing) -> Delivery:
    row = message.row
    loop = asyncio.get_running_loop()
    deadline = loop.time() + db.settings.sms_send_seconds
    attempts: list[dict[str, Any]] = []
    receipt: Receipt | None = None
    pause = FIRST_PAUSE
    with sending(row.kind, f"ivrs-sms-{row.id}", deadline - GUARD):
        while True:
            attempt, receipt, retry_after = await _attempt(db, message, deadline)
            attempts.append(attempt)
            log.info(
                "sms_attempt",
                outbox_id=row.id,
                kind=row.kind,
                mobile_last4=last4(row.mobile),
                **{k: v for k, v in attempt.items() if k != "at"},
            )
            if attempt["outcome"] != "not_accepted" or len(attempts) == MAX_ATTEMPTS:
                break
            wait = retry_after if retry_after is not None else pause * random.uniform(0.8, 1.2)
            if loop.time() + wait + MIN_ATTEMPT > deadline - GUARD:
                break  # no time for another attempt: not sent
            await asyncio.sleep(wait)
            pause *= 2
    delivery = Delivery(STATUS_OF[attempts[-1]["outcome"]], attempts)
    await _record(db, row.id, delivery, receipt)
    if delivery.status != "sent":
        log.warning(
            "sms_failed",
            outbox_id=row.id,
            kind=row.kind,
            mobile_last4=last4(row.mobile),
            status=delivery.status,
            attempts=len(attempts),
            error=attempts[-1]["error"],
        )
    return delivery


async def _attempt(
    db: Database, message: Outgoing, deadline: float
) -> tuple[dict[str, Any], Receipt | None, float | None]:
    """One try of the sender: the attempt as recorded, the receipt, the provider's Retry-After."""
    loop = asyncio.get_running_loop()
    started, at = loop.time(), db.now()
    receipt: Receipt | None = None
    outcome, status, error, retry_after = "accepted", None, None, None
    try:
        async with asyncio.timeout_at(deadline):
            receipt = await db.sms_sender.send(message.row.mobile, message.text)
        status = receipt.status if receipt else None
    except NotDelivered as e:
        outcome, status, error, retry_after = e.outcome, e.status, e.error, e.retry_after
    except Exception as e:  # anything else (a timeout too): it may have gone out
        outcome, error = "unknown", type(e).__name__  # never str(e): it may quote the text
    attempt = {
        "at": at.isoformat(),
        "outcome": outcome,
        "status": status,
        "error": error,
        "ms": round((loop.time() - started) * 1000),
    }
    return attempt, receipt, retry_after


async def _record(db: Database, row_id: int, delivery: Delivery, receipt: Receipt | None) -> None:
    """The outcome on the row, once: only a row still pending is written (one statement)."""
    params = {
        "row_id": row_id,
        "outcome": delivery.status,
        "tried": delivery.attempts,
        "ref": receipt.ref if receipt else None,
        "sent": db.now() if delivery.status == "sent" else None,
    }
    async with db.sessions.single() as session:
        await session.execute(_RECORD, params)
