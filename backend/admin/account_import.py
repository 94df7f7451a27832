"""Migrated ROCARS accounts imported from a CSV, all or nothing: every row is checked first,
each problem reported with its line, and nothing is written unless every row is good. No
message ever quotes a password."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import formats
from backend import audit
from backend.admin.common import CHUNK, AdminError, existing_values, nothing_imported
from backend.audit import Actor
from backend.database import Database
from backend.login import SERVICE
from backend.models import Account, AccountType, Token
from backend.security import is_argon2_hash
from formats.csvfile import read_rows

log = structlog.get_logger(__name__)


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
        raise AdminError(nothing_imported(problems))
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
                        nothing_imported([f"{row.where}: token {row.token_serial} was taken"])
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
    existing = await existing_values(session, Account.number, [r.number for r in rows])
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
