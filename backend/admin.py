"""Administration: accounts, tokens, vehicles, lodged cargo and batches.

Used by `ivrs admin`, the console, the demo and tests. Each function is one unit of work (one
transaction) and raises `AdminError` with a message fit for a terminal when the input is wrong.
Given `by` (who asks), a change writes its audit entry in that same transaction.

Imports (token seed files, ROCARS accounts) are all or nothing: every row is checked first,
each problem reported with its line, and nothing is written unless every row is good. No
message ever quotes a seed or a password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import cast

import structlog
from sqlalchemy import case, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import formats
import otp
from backend import audit
from backend.audit import Actor
from backend.database import Database, unused_number
from backend.login import SERVICE, caller_key
from backend.models import (
    Account,
    AccountType,
    Batch,
    BatchItem,
    CallerThrottle,
    Cargo,
    CargoKind,
    Token,
    TokenKind,
    Vehicle,
)
from backend.security import is_argon2_hash
from backend.timezones import hong_kong_date
from formats.csvfile import read_rows
from otp import TokenProfile, new_seed
from otp.enrolment import provisioning_uri
from otp.seedfile import SeedFileError, read_seed_file

log = structlog.get_logger(__name__)

CARGO_VALID_FOR = timedelta(days=14)
MAX_BATCH_CCRNS = 50  # a batch must fit in one bundle submission
SERVICES = frozenset({SERVICE})  # the services an account may hold
ACCOUNT_TYPES: dict[str, AccountType] = {
    "trucker": "trucker",
    "agent": "agent",
    "agent_company": "agent",
    "agent company": "agent",
    "shipper": "shipper",
}
ACCOUNTS_HEADER = (
    "number",
    "password_hash_or_initial_password",
    "token_serial",
    "type",
    "services",
)
MAX_REPORTED = 20  # problems listed at once
CHUNK = 500  # values per IN (...) list: far below SQLite's and PostgreSQL's limits


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
    by: Actor | None = None,
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
            audit.changed(session, db, by, "account_created", f"account:{number}", {"type": type})
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
    by: Actor | None = None,
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
                    created_at=db.now(),
                )
            )
            target = f"account:{account_number}" if account_number else f"token:{serial}"
            audit.changed(session, db, by, "token_added", target, {"kind": kind, "serial": serial})
    except IntegrityError:
        raise AdminError(f"token {serial} already exists") from None
    return seed


# --- token seed files -------------------------------------------------------------------------


async def import_tokens(
    db: Database,
    data: bytes,
    kind: TokenKind = "hardware",
    psk: bytes | None = None,
    password: str | None = None,
    file_name: str | None = None,
    by: Actor | None = None,
) -> list[str]:
    """Import a seed file (CSV or PSKC, `otp.seedfile`); return the serials imported.

    The tokens are unassigned: an account import, `assign_token` or `add_token` links them.
    Seeds are stored encrypted (SeedCipher); the file itself holds them in clear, so it should
    be deleted once imported. `psk` or `password`: the pre-shared key, or the password its key
    is derived from (PBKDF2), of an encrypted PSKC file; `file_name`: for the audit entry.

    Event (HOTP) tokens are stored with the counter the file gives as the next one to use
    (PSKC's Counter; 0 when the file gives none).
    """
    try:
        records = await asyncio.to_thread(read_seed_file, data, psk, password)  # PBKDF2 is slow
    except SeedFileError as e:
        raise AdminError(_nothing_imported(e.problems)) from None
    problems = []
    for r in records:
        try:
            TokenProfile(kind, digits=r.digits, period=r.period, type=r.type)
        except ValueError as e:
            problems.append(f"{r.where}: {e}")
    now = db.now()
    try:
        async with db.sessions.begin() as session:
            existing = await _existing(session, Token.serial, [r.serial for r in records])
            problems += [
                f"{r.where}: token {r.serial} already exists"
                for r in records
                if r.serial in existing
            ]
            if problems:
                raise AdminError(_nothing_imported(problems))
            session.add_all(
                Token(
                    serial=r.serial,
                    kind=kind,
                    type=r.type,
                    digits=r.digits,
                    period=r.period,
                    seed_encrypted=db.seeds.encrypt(r.seed_base32),
                    counter=(r.counter or 0) if r.type == "hotp" else None,
                    expires_on=r.expires_on,
                    account_id=None,
                    created_at=now,
                )
                for r in records
            )
            serials = [r.serial for r in records]
            # The first serials, to find them again (never the seeds).
            detail = {
                "count": len(serials),
                "kind": kind,
                "file": file_name,
                "serials": serials[:50],
            }
            audit.changed(session, db, by, "tokens_imported", None, detail)
    except IntegrityError:
        raise AdminError("a token of the file was added meanwhile; nothing imported") from None
    log.info("tokens_imported", count=len(records), kind=kind)
    return serials


async def assign_token(
    db: Database, serial: str, account_number: str, by: Actor | None = None
) -> None:
    """Link an unassigned token (as imported) to an account."""
    async with db.sessions.begin() as session:
        account = await _account(session, account_number)
        token = await _token(session, serial)
        if token.status == "revoked":
            raise AdminError(f"token {serial} is revoked")
        if token.account_id == account.id:
            raise AdminError(f"token {serial} is already assigned to {account_number}")
        if token.account_id is not None:
            raise AdminError(f"token {serial} is assigned to another account; revoke it first")
        claimed = await session.execute(
            update(Token)
            .where(Token.id == token.id, Token.account_id.is_(None))
            .values(account_id=account.id)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise AdminError(f"token {serial} was assigned meanwhile")
        detail = {"account": account_number}
        audit.changed(session, db, by, "token_assigned", f"token:{serial}", detail)
    log.info("token_assigned", serial=serial, account=account_number)


async def revoke_token(db: Database, serial: str, by: Actor | None = None) -> None:
    """A lost or broken token: refused at once, for good."""
    async with db.sessions.begin() as session:
        token = await _token(session, serial)
        if token.status == "revoked":
            raise AdminError(f"token {serial} is already revoked")
        await session.execute(
            update(Token)
            .where(Token.id == token.id)
            .values(status="revoked", revoked_at=db.now())
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "token_revoked", f"token:{serial}")
    log.info("token_revoked", serial=serial)


async def resync_token(
    db: Database,
    serial: str,
    first_code: str,
    second_code: str,
    window: int | None = None,
    by: Actor | None = None,
) -> int:
    """Resynchronise a token from two consecutive codes read off it now; return its drift (steps
    the token is ahead of the server, negative when behind; an event (HOTP) token: presses of
    its button that never reached a login). Both codes are used up. `window`: steps searched
    each side of now (otp.RESYNC_WINDOW), or counters ahead (otp.HOTP_RESYNC_WINDOW)."""
    now = db.now()
    async with db.sessions.begin() as session:
        token = await _token(session, serial)
        if token.status == "revoked":
            raise AdminError(f"token {serial} is revoked")
        seed = db.seeds.decrypt(token.seed_encrypted)
        expected = token.counter or 0  # hotp
        if token.type == "hotp":
            step = otp.resync_hotp(seed, first_code, second_code, token.profile, expected, window)
            where = f"the next {window or otp.HOTP_RESYNC_WINDOW} presses"
        else:
            step = otp.resync(seed, first_code, second_code, token.profile, now, window)
            where = f"±{window or otp.RESYNC_WINDOW} steps of now"
        if step is None:
            raise AdminError(
                f"no two consecutive codes of token {serial} match within {where}:"
                " read two codes in a row off the token and try again"
            )
        values: dict[str, int]
        if token.type == "hotp":
            # The counter is the token's own: no clock to drift from, only skipped presses.
            drift = step - 1 - expected
            values = {"counter": step + 1}
        else:
            drift = step - int(now.timestamp()) // cast(int, token.period)
            values = {"drift": drift, "last_used_step": step}
        await session.execute(
            update(Token)
            .where(Token.id == token.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "token_resynchronised", f"token:{serial}", {"drift": drift})
    log.info("token_resynchronised", serial=serial, drift=drift)
    return drift


# --- FortiToken Mobile enrolment --------------------------------------------------------------


@dataclass(frozen=True)
class MobileEnrolment:
    """A new FortiToken Mobile token, pending until its first correct code at a login."""

    account: str
    serial: str
    digits: int
    period: int
    seed: str = field(repr=False)  # base32; shown once, as the URI and its QR code
    uri: str = field(repr=False)


async def enrol_mobile_token(
    db: Database,
    account_number: str,
    digits: int = 6,
    period: int = 30,
    by: Actor | None = None,
) -> MobileEnrolment:
    """A new TOTP secret for the account's phone, stored as a pending token.

    The account's current token keeps working until the first login with a code of the new
    one; that login activates it and revokes the others. An earlier enrolment that was never
    activated is revoked now (its QR code may have been seen by someone else).
    """
    try:
        profile = TokenProfile("mobile", digits=digits, period=period)
    except ValueError as e:
        raise AdminError(str(e)) from None
    seed = new_seed()
    now = db.now()
    async with db.sessions.begin() as session:
        account = await _account(session, account_number)
        serial = await unused_number(
            session, Token.serial, lambda: "FTKM" + secrets.token_hex(5).upper()
        )
        await session.execute(
            update(Token)
            .where(Token.account_id == account.id, Token.status == "pending")
            .values(status="revoked", revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        session.add(
            Token(
                serial=serial,
                kind="mobile",
                digits=digits,
                period=period,
                seed_encrypted=db.seeds.encrypt(seed),
                account_id=account.id,
                status="pending",
                created_at=now,
            )
        )
        detail = {"serial": serial, "digits": digits, "period": period}
        audit.changed(session, db, by, "mobile_token_enrolled", f"account:{account_number}", detail)
    log.info("mobile_token_enrolled", account=account_number, serial=serial)
    uri = provisioning_uri(seed, profile, account_number)
    return MobileEnrolment(account_number, serial, digits, period, seed, uri)


# --- accounts: migration, unlock, password reset ------------------------------------------------


@dataclass(frozen=True)
class _AccountRow:
    where: str
    number: str
    password: str = field(repr=False)  # an Argon2 hash, or the initial password in clear
    token_serial: str | None
    type: AccountType
    services: list[str]


async def import_accounts(
    db: Database, data: bytes, file_name: str | None = None, by: Actor | None = None
) -> list[str]:
    """Load migrated ROCARS accounts from a CSV; return the numbers imported.

    Header `number,password_hash_or_initial_password,token_serial,type,services`:
    - number: the 8-digit IVRS account number (new to this system);
    - password_hash_or_initial_password: an Argon2id/Argon2i hash (`$argon2id$...`, quoted or
      not: its commas are understood), stored as it is, or an initial password of 6 to 12
      digits, hashed here;
    - token_serial: an imported, unassigned token (import-tokens first), or empty;
    - type: trucker, agent (or "agent company") or shipper;
    - services: the services held, separated by ';' (road_bundling), or empty.
    Every account is marked for first-call activation (mobile number and terms).
    `file_name`: for the audit entry.
    """
    rows, problems = _account_rows(data)
    async with db.sessions() as session:
        problems += await _account_conflicts(session, rows)
    if problems:
        raise AdminError(_nothing_imported(problems))
    hashes = await _password_hashes(db, [row.password for row in rows])
    try:
        async with db.sessions.begin() as session:
            accounts = [
                Account(
                    number=row.number,
                    type=row.type,
                    password_hash=password_hash,
                    services=row.services,
                    needs_activation=True,
                )
                for row, password_hash in zip(rows, hashes, strict=True)
            ]
            session.add_all(accounts)
            await session.flush()
            for row, account in zip(rows, accounts, strict=True):
                if row.token_serial is None:
                    continue
                claimed = await session.execute(
                    update(Token)
                    .where(
                        Token.serial == row.token_serial,
                        Token.account_id.is_(None),
                        Token.status != "revoked",
                    )
                    .values(account_id=account.id)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    raise AdminError(
                        _nothing_imported([f"{row.where}: token {row.token_serial} was taken"])
                    )
            detail = {"count": len(rows), "file": file_name}
            audit.changed(session, db, by, "accounts_imported", None, detail)
    except IntegrityError:
        raise AdminError("an account of the file was added meanwhile; nothing imported") from None
    log.info("accounts_imported", count=len(rows))
    return [row.number for row in rows]


def _account_rows(data: bytes) -> tuple[list[_AccountRow], list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], ["the file is not UTF-8 text"]
    rows, problems = read_rows(text, ACCOUNTS_HEADER, _account_row, "accounts")
    for name, values in (
        ("account", [(r.where, r.number) for r in rows]),
        ("token", [(r.where, r.token_serial) for r in rows if r.token_serial]),
    ):
        seen: dict[str, str] = {}
        for where, value in values:
            if value in seen:
                problems.append(f"{where}: {name} {value} repeats {seen[value]}")
            seen.setdefault(cast(str, value), where)
    return rows, problems


def _account_row(where: str, cells: list[str]) -> _AccountRow:
    extra = len(cells) - len(ACCOUNTS_HEADER)
    if extra > 0 and cells[1].startswith("$argon2"):
        # An unquoted Argon2 hash ("$argon2id$v=19$m=65536,t=3,p=4$...") spans three cells;
        # no other column holds a comma, so the split is undone unambiguously.
        cells = [cells[0], ",".join(cells[1 : 2 + extra]), *cells[2 + extra :]]
    if len(cells) != len(ACCOUNTS_HEADER):
        raise ValueError(f"{len(cells)} fields, expected {len(ACCOUNTS_HEADER)}")
    number, password, serial, type_, services = cells
    if not formats.is_account_number(number):
        raise ValueError(f"number: an account number has {formats.ACCOUNT_DIGITS} digits")
    if password.startswith("$"):
        if not is_argon2_hash(password):
            raise ValueError("password: not an Argon2id/Argon2i hash this system can verify")
    elif not formats.is_password(password):
        low, high = formats.PASSWORD_DIGITS
        raise ValueError(f"password: an initial password has {low} to {high} digits")
    account_type = ACCOUNT_TYPES.get(type_.lower())
    if account_type is None:
        raise ValueError("type: trucker, agent or shipper")
    held = [s for s in services.replace(",", ";").replace(" ", ";").lower().split(";") if s]
    if unknown := [s for s in held if s not in SERVICES]:
        raise ValueError(
            f"services: unknown {', '.join(unknown)} (known: {', '.join(sorted(SERVICES))})"
        )
    return _AccountRow(
        where, number, password, serial or None, account_type, list(dict.fromkeys(held))
    )


async def _account_conflicts(session: AsyncSession, rows: list[_AccountRow]) -> list[str]:
    existing = await _existing(session, Account.number, [r.number for r in rows])
    problems = [
        f"{r.where}: account {r.number} already exists" for r in rows if r.number in existing
    ]
    serials = [r.token_serial for r in rows if r.token_serial]
    tokens: dict[str, Token] = {}
    for i in range(0, len(serials), CHUNK):
        found = await session.scalars(select(Token).where(Token.serial.in_(serials[i : i + CHUNK])))
        tokens |= {t.serial: t for t in found}
    for r in rows:
        if r.token_serial is None:
            continue
        token = tokens.get(r.token_serial)
        if token is None:
            problems.append(f"{r.where}: no token {r.token_serial} (import the seed file first)")
        elif token.status == "revoked":
            problems.append(f"{r.where}: token {r.token_serial} is revoked")
        elif token.account_id is not None:
            problems.append(f"{r.where}: token {r.token_serial} is assigned to another account")
    return problems


async def _password_hashes(db: Database, passwords: list[str]) -> list[str]:
    """Imported hashes as they are; initial passwords hashed, two at a time (Argon2 is meant to
    be slow, and runs in threads)."""
    limit = asyncio.Semaphore(2)

    async def one(password: str) -> str:
        if password.startswith("$"):
            return password
        async with limit:
            return await db.passwords.hash(password)

    return list(await asyncio.gather(*(one(p) for p in passwords)))


async def unlock(db: Database, number: str, by: Actor | None = None) -> None:
    """Lift a lockout (failures or an administrator's lock); a disabled account stays so."""
    async with db.sessions.begin() as session:
        account = await _account(session, number)
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(
                failed_logins=0,
                locked_until=None,
                status=case((Account.status == "locked", "active"), else_=Account.status),
            )
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "account_unlocked", f"account:{number}")
    log.info("account_unlocked", account=number)


async def lock(db: Database, number: str, by: Actor | None = None) -> None:
    """An administrator's lock: every login refused until `unlock` (a disabled account stays
    disabled)."""
    async with db.sessions.begin() as session:
        account = await _account(session, number)
        if account.status != "active":
            raise AdminError(f"account {number} is already {account.status}")
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(status="locked")
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "account_locked", f"account:{number}")
    log.info("account_locked_by_admin", account=number)


async def reset_password(db: Database, number: str, password: str, by: Actor | None = None) -> None:
    """An administrator sets a new password (6 to 12 digits); the failure count starts afresh."""
    if not formats.is_password(password):
        low, high = formats.PASSWORD_DIGITS
        raise AdminError(f"a password has {low} to {high} digits (it is keyed on a phone)")
    password_hash = await db.passwords.hash(password)
    async with db.sessions.begin() as session:
        account = await _account(session, number)
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(password_hash=password_hash, failed_logins=0)
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "password_reset", f"account:{number}")
    log.info("password_reset", account=number)


async def release_caller(db: Database, caller_id: str, by: Actor | None = None) -> bool:
    """Forget a caller number's failed logins (and lift its throttle); False if none were kept."""
    async with db.sessions.begin() as session:
        result = await session.execute(
            delete(CallerThrottle).where(CallerThrottle.caller == caller_key(caller_id))
        )
        released = bool(result.rowcount)  # type: ignore[attr-defined]
        if released:
            audit.changed(session, db, by, "caller_released", f"caller:{caller_id}")
    return released


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


async def _token(session: AsyncSession, serial: str) -> Token:
    token = await session.scalar(select(Token).where(Token.serial == serial))
    if token is None:
        raise AdminError(f"no token {serial}")
    return token


async def _existing(session: AsyncSession, column: object, values: list[str]) -> set[str]:
    """Which of `values` are already in `column` (a unique string column)."""
    found: set[str] = set()
    for i in range(0, len(values), CHUNK):
        chunk = values[i : i + CHUNK]
        found |= set(await session.scalars(select(column).where(column.in_(chunk))))  # type: ignore[attr-defined,call-overload]
    return found


def _nothing_imported(problems: list[str]) -> str:
    shown = problems[:MAX_REPORTED]
    if len(problems) > MAX_REPORTED:
        shown.append(f"... and {len(problems) - MAX_REPORTED} more")
    return "nothing imported:\n  " + "\n  ".join(shown)


def _checked_seed(seed_base32: str) -> str:
    seed = seed_base32.replace(" ", "").upper()
    try:
        base64.b32decode(seed + "=" * (-len(seed) % 8))
    except binascii.Error:
        raise AdminError("the seed is not base32") from None
    return seed
