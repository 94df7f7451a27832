"""Token seed files (CSV or PSKC, otp.seedfile) imported all or nothing: every token is checked
first, each problem reported with its line, and nothing is written unless every one is good.
No message ever quotes a seed."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.exc import IntegrityError

from backend import audit
from backend.admin.common import AdminError, existing_values, nothing_imported
from backend.audit import Actor
from backend.database import Database
from backend.models import Token, TokenKind
from otp import TokenProfile
from otp.seedfile import SeedFileError, read_seed_file

log = structlog.get_logger(__name__)


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
        raise AdminError(nothing_imported(e.problems)) from None
    problems = []
    for r in records:
        try:
            TokenProfile(kind, digits=r.digits, period=r.period, type=r.type)
        except ValueError as e:
            problems.append(f"{r.where}: {e}")
    now = db.now()
    try:
        async with db.sessions.begin() as session:
            existing = await existing_values(session, Token.serial, [r.serial for r in records])
            problems += [
                f"{r.where}: token {r.serial} already exists"
                for r in records
                if r.serial in existing
            ]
            if problems:
                raise AdminError(nothing_imported(problems))
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
