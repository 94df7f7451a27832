"""What the backend stored, read straight from its database: bundles, a call's log and its
events."""

from __future__ import annotations

from sqlalchemy import select, text

from backend.database import Database
from backend.models import Bundle, Call, CallEvent


async def stored_bundles(db: Database) -> list[Bundle]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Bundle)))


async def stored_call(db: Database, uniqueid: str) -> Call:
    async with db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
        assert call is not None, f"no call log for {uniqueid}"
        return call


async def stored_events(db: Database, uniqueid: str) -> tuple[Call, list[CallEvent]]:
    async with db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
        assert call is not None, f"no call log for {uniqueid}"
        events = await session.scalars(
            select(CallEvent)
            .where(CallEvent.call_id == call.id)
            .order_by(CallEvent.at, CallEvent.id)
        )
        return call, list(events)


async def database_text(db: Database) -> str:
    """Every value stored in the tables that could hold a code, as one string."""
    async with db.sessions() as session:
        rows = []
        for table in ("sms_codes", "sms_outbox", "call_events", "accounts"):
            rows += [str(tuple(r)) for r in await session.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(rows)
