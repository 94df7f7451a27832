"""Administration: accounts, tokens, vehicles, lodged cargo and batches.

Used by `ivrs admin`, the demo and tests. Each function is one unit of work (one transaction)
and raises `AdminError` with a message fit for a terminal when the input is wrong.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import formats
from backend.database import Database, unused_number
from backend.models import (
    Account,
    AccountType,
    Batch,
    BatchItem,
    Cargo,
    CargoKind,
    Token,
    TokenKind,
    Vehicle,
)
from backend.timezones import hong_kong_date
from otp import TokenProfile, new_seed

CARGO_VALID_FOR = timedelta(days=14)
MAX_BATCH_CCRNS = 50  # a batch must fit in one bundle submission


class AdminError(Exception):
    """Bad administrative input: duplicate, unknown or malformed."""


async def create_account(
    db: Database,
    number: str,
    password: str,
    type: AccountType = "trucker",
    services: Iterable[str] = ("road_bundling",),
    needs_activation: bool = False,
    mobile: str | None = None,
) -> None:
    if not formats.is_account_number(number):
        raise AdminError(f"an account number has {formats.ACCOUNT_DIGITS} digits")
    if not formats.is_password(password):
        low, high = formats.PASSWORD_DIGITS
        raise AdminError(f"a password has {low} to {high} digits (it is keyed on a phone)")
    if type not in ("trucker", "agent", "shipper"):
        raise AdminError(f"unknown account type: {type}")
    account = Account(
        number=number,
        type=type,
        password_hash=await db.passwords.hash(password),
        services=list(services),
        needs_activation=needs_activation,
        mobile=mobile,
    )
    try:
        async with db.sessions.begin() as session:
            session.add(account)
    except IntegrityError:
        raise AdminError(f"account {number} already exists") from None


async def add_token(
    db: Database,
    account_number: str | None,
    serial: str | None = None,
    kind: TokenKind = "hardware",
    digits: int = 6,
    period: int = 60,
    expires_on: date | None = None,
    seed_base32: str | None = None,
) -> str:
    """Assign a token (or add an unassigned one, with no account); return its seed, base32."""
    try:
        TokenProfile(kind, digits=digits, period=period)
    except ValueError as e:
        raise AdminError(str(e)) from None
    seed = _checked_seed(seed_base32) if seed_base32 else new_seed()
    serial = serial or ("FTK2" if kind == "hardware" else "FTKM") + secrets.token_hex(5).upper()
    try:
        async with db.sessions.begin() as session:
            account_id = None
            if account_number is not None:
                account_id = (await _account(session, account_number)).id
            session.add(
                Token(
                    serial=serial,
                    kind=kind,
                    digits=digits,
                    period=period,
                    seed_encrypted=db.seeds.encrypt(seed),
                    expires_on=expires_on,
                    account_id=account_id,
                )
            )
    except IntegrityError:
        raise AdminError(f"token {serial} already exists") from None
    return seed


async def add_vehicle(db: Database, mark: str) -> None:
    mark = mark.strip().upper()
    if not formats.is_vehicle_mark(mark):
        raise AdminError(f"not a Hong Kong registration mark: {mark}")
    try:
        async with db.sessions.begin() as session:
            session.add(Vehicle(mark=mark))
    except IntegrityError:
        raise AdminError(f"vehicle {mark} already exists") from None


async def lodge_cargo(
    db: Database,
    *,
    kind: CargoKind = "packages",
    description: str = "Cartons",
    packages_count: int | None = 10,
    article_description: str | None = "Garments",
    gross_weight: Decimal | float | None = None,
    volume: Decimal | float | None = None,
    consignor: str = "Pearl River Garments Ltd, Dongguan",
    consignee: str = "Harbour Trading Co Ltd, Kwai Chung, Hong Kong",
    expected_date: date | None = None,
) -> str:
    """Lodge road cargo information (the eight ROCARS items); return its new CCRN."""
    if kind == "packages" and not (packages_count and packages_count > 0):
        raise AdminError("cargo in packages needs the number of packages")
    if kind == "bulk" and gross_weight is None and volume is None:
        raise AdminError("bulk cargo needs its gross weight or volume")
    now = db.now()
    cargo = Cargo(
        lodged_at=now,
        expires_at=now + CARGO_VALID_FOR,
        kind=kind,
        description=description,
        packages_count=packages_count,
        article_description=article_description,
        gross_weight=None if gross_weight is None else Decimal(str(gross_weight)),
        volume=None if volume is None else Decimal(str(volume)),
        consignor=consignor,
        consignee=consignee,
        expected_date=expected_date or hong_kong_date(now),
    )
    async with db.sessions.begin() as session:
        cargo.ccrn = await unused_number(session, Cargo.ccrn, formats.new_ccrn)
        session.add(cargo)
    return cargo.ccrn


async def combine_batch(db: Database, ccrns: Sequence[str]) -> str:
    """Combine lodged CCRNs into a batch; return the batch number."""
    ccrns = list(dict.fromkeys(ccrns))
    if not 1 <= len(ccrns) <= MAX_BATCH_CCRNS:
        raise AdminError(f"a batch holds 1 to {MAX_BATCH_CCRNS} CCRNs")
    async with db.sessions.begin() as session:
        found = set(await session.scalars(select(Cargo.ccrn).where(Cargo.ccrn.in_(ccrns))))
        if missing := [c for c in ccrns if c not in found]:
            raise AdminError(f"no cargo lodged under {', '.join(missing)}")
        number = await unused_number(session, Batch.number, formats.new_batch_number)
        batch = Batch(number=number, created_at=db.now())
        batch.items = [BatchItem(ccrn=c) for c in ccrns]
        session.add(batch)
    return batch.number


async def _account(session: AsyncSession, number: str) -> Account:
    account = await session.scalar(select(Account).where(Account.number == number))
    if account is None:
        raise AdminError(f"no account {number}")
    return account


def _checked_seed(seed_base32: str) -> str:
    seed = seed_base32.replace(" ", "").upper()
    try:
        base64.b32decode(seed + "=" * (-len(seed) % 8))
    except binascii.Error:
        raise AdminError("the seed is not base32") from None
    return seed
