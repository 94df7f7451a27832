"""Vehicles known by their Hong Kong registration mark."""

from __future__ import annotations

import structlog
from sqlalchemy.exc import IntegrityError

import formats
from backend.admin.common import AdminError
from backend.database import Database
from backend.models import Vehicle

log = structlog.get_logger(__name__)


async def add_vehicle(db: Database, mark: str) -> None:
    mark = mark.strip().upper()
    if not formats.is_vehicle_mark(mark):
        raise AdminError(f"not a Hong Kong registration mark: {mark}")
    try:
        async with db.sessions.begin() as session:
            session.add(Vehicle(mark=mark))
    except IntegrityError:
        raise AdminError(f"vehicle {mark} already exists") from None
