"""The backend's tables (SQLAlchemy 2.0 typed mappings), portable between SQLite and PostgreSQL.

Races are decided here, by constraints, not by reads before writes: the partial unique index on
active bundle items (one active bundle per CCRN), the unique idempotency keys of bundles and
cancellations, one acceptance per account and terms version, and the numbered SMS codes of a
call (at most 3).
Async sessions cannot lazy-load, so relationships are loaded explicitly (`selectinload`) and
`lazy="raise"` turns a forgotten load into a clear error.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

import otp
from backend.columns import UtcDateTime

AccountType = Literal["trucker", "agent", "shipper"]
AccountStatus = Literal["active", "locked", "disabled"]
TokenKind = Literal["hardware", "mobile"]
OtpType = Literal["totp", "hotp"]  # time-based (RFC 6238) or event, a button press (RFC 4226)
# pending: enrolled, waiting for its first correct code; revoked: replaced or lost, never valid.
TokenStatus = Literal["active", "pending", "revoked"]
CargoKind = Literal["packages", "bulk"]
BundleStatus = Literal["active", "cancelled"]
SmsKind = Literal["sms_code", "bundle_confirmation"]
SmsStatus = Literal["pending", "sent", "refused", "not_sent", "unknown"]  # backend/sms/outbox.py
# Console roles: supervisor (calls, recordings), admin (also accounts and tokens), auditor (also
# the audit log). backend/console/auth.py says what each may do.
SupervisorRole = Literal["supervisor", "admin", "auditor"]


# Every constraint and index gets a predictable name, the same on SQLite and PostgreSQL, so a
# migration can drop or alter one by name (SQLAlchemy's recommended convention).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Literal[...] columns become VARCHAR enums (no native PostgreSQL ENUM type to migrate).
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(8), unique=True)
    type: Mapped[AccountType]
    status: Mapped[AccountStatus] = mapped_column(default="active")
    password_hash: Mapped[str] = mapped_column(String(255))
    mobile: Mapped[str | None] = mapped_column(String(16))
    terms_version_accepted: Mapped[str | None] = mapped_column(String(32))
    needs_activation: Mapped[bool] = mapped_column(default=False)
    services: Mapped[list[str]] = mapped_column(default=list)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    # One login at a time per account (backend/login.py): who holds it, and until when.
    login_lease: Mapped[str | None] = mapped_column(String(32))
    login_lease_until: Mapped[datetime | None]

    tokens: Mapped[list[Token]] = relationship(back_populates="account", lazy="raise")


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[TokenKind]
    type: Mapped[OtpType] = mapped_column(default="totp", server_default="totp")
    digits: Mapped[int]
    period: Mapped[int | None]  # seconds between codes: totp only
    seed_encrypted: Mapped[str] = mapped_column(Text)  # Fernet token; the key is not in the DB
    drift: Mapped[int] = mapped_column(default=0)  # totp: in time steps, learnt at each login
    last_used_step: Mapped[int | None]  # totp replay refusal: later logins need a later step
    # hotp: the next counter the server expects; codes of earlier ones are refused (replay).
    counter: Mapped[int | None]
    expires_on: Mapped[date | None]
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # A replacement (FortiToken Mobile enrolment) is pending until its first correct code at a
    # login; that login activates it and revokes the account's other tokens.
    status: Mapped[TokenStatus] = mapped_column(default="active", server_default="active")
    created_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    account: Mapped[Account | None] = relationship(back_populates="tokens", lazy="raise")

    @property
    def profile(self) -> otp.TokenProfile:
        """How the token computes its codes."""
        return otp.TokenProfile(self.kind, digits=self.digits, period=self.period, type=self.type)


class CallerThrottle(Base):
    """Failed logins per caller number, against one caller trying many accounts: after too many
    in a window the number is refused for a while without any check (backend/login.py)."""

    __tablename__ = "caller_throttles"

    id: Mapped[int] = mapped_column(primary_key=True)
    caller: Mapped[str] = mapped_column(String(64), unique=True)  # digits, or "anonymous"
    failures: Mapped[int] = mapped_column(default=0, server_default="0")
    window_started_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class Vehicle(Base):
    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    mark: Mapped[str] = mapped_column(String(8), unique=True)


class Cargo(Base):
    """Road cargo information as a shipper lodges it: the eight items, valid for 14 days."""

    __tablename__ = "cargo"

    id: Mapped[int] = mapped_column(primary_key=True)
    ccrn: Mapped[str] = mapped_column(String(12), unique=True)
    lodged_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    kind: Mapped[CargoKind]
    description: Mapped[str] = mapped_column(Text)  # of the packages, or of the bulk cargo
    packages_count: Mapped[int | None]  # packages: number of packages; bulk: quantity if any
    article_description: Mapped[str | None] = mapped_column(Text)
    gross_weight: Mapped[Decimal | None] = mapped_column(Numeric(14, 3))  # kg
    volume: Mapped[Decimal | None] = mapped_column(Numeric(14, 3))  # m³
    consignor: Mapped[str] = mapped_column(Text)
    consignee: Mapped[str] = mapped_column(Text)
    expected_date: Mapped[date]


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(10), unique=True)
    created_at: Mapped[datetime]

    items: Mapped[list[BatchItem]] = relationship(order_by="BatchItem.id", lazy="raise")


class BatchItem(Base):
    __tablename__ = "batch_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    ccrn: Mapped[str] = mapped_column(ForeignKey("cargo.ccrn"))


class Bundle(Base):
    __tablename__ = "bundles"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(10), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    vehicle_mark: Mapped[str] = mapped_column(String(8), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)  # the console's daily summary
    earliest_crossing: Mapped[datetime]
    status: Mapped[BundleStatus] = mapped_column(default="active")
    # Unique: a retried submission finds the bundle its first attempt made (NULLs never clash).
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)

    account: Mapped[Account] = relationship(lazy="raise")
    items: Mapped[list[BundleItem]] = relationship(order_by="BundleItem.id", lazy="raise")


class BundleItem(Base):
    __tablename__ = "bundle_items"
    __table_args__ = (
        # One active bundle per CCRN, whoever commits first: the database decides races.
        Index(
            "uq_bundle_items_active_ccrn",
            "ccrn",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bundle_id: Mapped[int] = mapped_column(ForeignKey("bundles.id"), index=True)
    ccrn: Mapped[str] = mapped_column(ForeignKey("cargo.ccrn"))
    active: Mapped[bool] = mapped_column(default=True)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        # The console's list: newest first, paged by (started_at, id), optionally filtered by
        # one of these columns; each index serves its filter and the order at once (a language
        # is a third of the calls: the started_at index with a filter serves it as well).
        Index("ix_calls_started_at_id", "started_at", "id"),
        Index("ix_calls_caller_id_started_at", "caller_id", "started_at", "id"),
        Index("ix_calls_hotline_started_at", "hotline", "started_at", "id"),
        Index("ix_calls_outcome_started_at", "outcome", "started_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)  # Asterisk's UNIQUEID
    hotline: Mapped[str] = mapped_column(String(32))
    caller_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(8))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(64))
    last_stage: Mapped[str | None] = mapped_column(String(64))
    account_number: Mapped[str | None] = mapped_column(String(8), index=True)

    events: Mapped[list[CallEvent]] = relationship(
        order_by=lambda: (CallEvent.at, CallEvent.id), lazy="raise"
    )


class CallEvent(Base):
    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[Literal["prompt", "input", "backend", "stage", "error"]]
    name: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    duration_ms: Mapped[int | None]


class Unbundling(Base):
    """A cancellation, kept so that a retried request (same Idempotency-Key) gets the same
    answer: the CCRNs this key cancelled."""

    __tablename__ = "unbundlings"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    vehicle_mark: Mapped[str] = mapped_column(String(8))
    ccrn: Mapped[str | None] = mapped_column(String(12))  # None: every CCRN on the vehicle
    cancelled: Mapped[list[str]]
    created_at: Mapped[datetime]
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))


class SmsCode(Base):
    """A code sent to a mobile number being registered. Only an HMAC of the code is kept; the
    newest code of an account is the one that counts."""

    __tablename__ = "sms_codes"
    __table_args__ = (
        # The n-th code of an account in a call: a 4th cannot exist, even when requests race.
        Index("uq_sms_codes_call_seq", "account_id", "call_id", "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    seq: Mapped[int]
    mobile: Mapped[str] = mapped_column(String(16))  # 8 digits, registered when verified
    code_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256, hex
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[datetime | None]


class TermsAcceptance(Base):
    __tablename__ = "terms_acceptances"
    __table_args__ = (Index("uq_terms_acceptances_version", "account_id", "version", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    version: Mapped[str] = mapped_column(String(32))
    accepted_at: Mapped[datetime]
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))


class SmsOutbox(Base):
    """Every SMS, queued in the transaction that decided it and delivered after the commit,
    with every attempt. A code is stored masked ("******"): it never rests here."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    mobile: Mapped[str] = mapped_column(String(16))  # E.164, as SMS gateways take it
    kind: Mapped[SmsKind]
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]  # when the provider accepted it
    status: Mapped[SmsStatus] = mapped_column(default="pending", server_default="pending")
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    provider_ref: Mapped[str | None] = mapped_column(String(64))  # e.g. Twilio's message SID


class Recording(Base):
    """A call's recording found in IVRS_RECORDINGS_DIR (`<uniqueid>.wav`, by MixMonitor): a row
    lets the console filter calls by "has recording" without touching the disk."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), unique=True)
    file_name: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int]
    found_at: Mapped[datetime]


class Supervisor(Base):
    """A person who signs in to the console (`ivrs admin create-supervisor`)."""

    __tablename__ = "supervisors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[SupervisorRole]
    password_hash: Mapped[str] = mapped_column(String(255))  # Argon2
    # The phone that "listen in" rings (a dialplan extension), if the supervisor has one.
    extension: Mapped[str | None] = mapped_column(String(32))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept, so a copy
    of the database signs no one in."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    supervisor_id: Mapped[int] = mapped_column(ForeignKey("supervisors.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))  # every form of the session carries it
    created_at: Mapped[datetime]  # the absolute expiry counts from here
    last_seen_at: Mapped[datetime]  # the idle expiry counts from here

    supervisor: Mapped[Supervisor] = relationship(lazy="raise")


class LoginSession(Base):
    """A phone login's session: bundling, cancelling and enquiries need it (backend/sessions.py)."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)
    expires_at: Mapped[datetime]


class AuditEntry(Base):
    """Who did what to which call, account or token, and when: console sign-ins, playbacks,
    downloads, listen-in, account changes, and the `ivrs admin` commands (backend/audit.py)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at_id", "at", "id"),
        Index("ix_audit_log_actor_at", "actor", "at"),
        Index("ix_audit_log_target_at", "target", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(96))  # "supervisor:NAME", "cli:USER"
    action: Mapped[str] = mapped_column(String(64))  # e.g. recording_played, account_unlocked
    target: Mapped[str | None] = mapped_column(String(128))  # e.g. "call:42", "account:12345678"
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # never a secret
    source: Mapped[str | None] = mapped_column(String(64))  # the browser's address
    # A playback's or download's ticket: unique, so its many Range requests write one entry.
    ticket: Mapped[str | None] = mapped_column(String(64), unique=True)
