"""A caller may hang up at any moment. For the bundle, cancel and first-call flows, the caller
hangs up during every command that plays or reads (positions generated from one complete
call), and nothing half-done may stay: no partial bundle, no half-registered mobile, no
half-cancelled bundle, and the call log closed with the stage reached."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from backend.models import Account, Bundle
from tests.support.stored import stored_call
from tests.support.truckers import Trucker

PLAYING = ("STREAM FILE", "GET DATA", "WAIT FOR DIGIT", "SAY ")


def playing_positions(record: Any) -> list[int]:
    return [i for i, e in enumerate(record.exchanges) if e.command.startswith(PLAYING)]


def position_of(record: Any, text: str) -> int:
    return next(i for i, e in enumerate(record.exchanges) if text in e.command)


async def active_bundles(db: Any, account: str) -> int:
    async with db.sessions() as session:
        owner = await session.scalar(select(Account.id).where(Account.number == account))
        rows = await session.scalars(
            select(Bundle).where(Bundle.account_id == owner, Bundle.status == "active")
        )
        return len(list(rows))


async def account_row(db: Any, number: str) -> Account:
    async with db.sessions() as session:
        account = await session.scalar(select(Account).where(Account.number == number))
        assert account is not None
        return account


Setup = Callable[[Trucker], Awaitable[None]]
Check = Callable[[Trucker, int, Any], Awaitable[None]]


async def hang_up_everywhere(
    ctx: dict[str, Any],
    keys: Callable[[Trucker], str],
    check: Check,
    *,
    setup: Setup | None = None,
    totp: Callable[[Trucker], Callable[[], str]] | None = None,
    **trucker_options: Any,
) -> Any:
    """Place the complete call once, then once per position with a hang-up there."""
    make, phone, db = ctx["make_trucker"], ctx["phone"], ctx["db"]

    start: list[Any] = []

    async def call(position: int | None) -> tuple[Trucker, Any]:
        trucker = await make(**trucker_options)
        # Every call at the same instant: the times read back (as fragments: 10:00 is one file
        # fewer than 10:01) are the same, so a position means the same command in each call.
        start[:] = start or [trucker.clock.now()]
        trucker.clock.set(start[0])
        if setup:
            await setup(trucker)
        options: dict[str, Any] = {"totp": (totp or (lambda t: t.code))(trucker)}
        if position is not None:
            options["hangup_at"] = lambda c: c.index == position
        return trucker, await phone(keys(trucker), None, **options)

    _, complete = await call(None)
    assert not complete.hung_up and complete.prompt_ids[-1] == "call.goodbye", complete.prompt_ids
    positions = playing_positions(complete)
    assert len(positions) > 20
    for position in positions:
        trucker, record = await call(position)
        assert record.hung_up, position
        logged = await stored_call(db, record.uniqueid)
        assert logged.outcome == "caller_hung_up", (position, logged.outcome)
        assert logged.ended_at is not None and logged.last_stage, position
        await check(trucker, position, complete)
    return complete


async def test_hang_up_anywhere_in_a_bundle_call_leaves_no_partial_bundle(
    make_trucker, phone, db
) -> None:
    async def check(trucker: Trucker, position: int, complete: Any) -> None:
        # Bundling happens on `2` (submit), before the reference is read back.
        submitted = position_of(complete, "ivrs/bundle/submitted")
        assert await active_bundles(db, trucker.account) == (1 if position >= submitted else 0)

    await hang_up_everywhere(
        {"make_trucker": make_trucker, "phone": phone, "db": db},
        lambda t: f"3 {t.login_keys()} {t.vehicle_keys} 1 {t.ccrns[0]}# 1 {t.ccrns[1]}# 2",
        check,
    )


async def test_hang_up_anywhere_in_a_cancel_call_cancels_all_or_nothing(
    make_trucker, phone, db
) -> None:
    async def bundle_first(trucker: Trucker) -> None:
        await phone(trucker.bundle_keys(), trucker)

    async def check(trucker: Trucker, position: int, complete: Any) -> None:
        done = position_of(complete, "ivrs/unbundle/done")
        assert await active_bundles(db, trucker.account) == (0 if position >= done else 1)

    await hang_up_everywhere(
        {"make_trucker": make_trucker, "phone": phone, "db": db},
        lambda t: f"3 {t.login_keys()} * 2 1 2 1 9",  # recent vehicle, cancel all, confirm
        check,
        setup=bundle_first,
    )


async def test_hang_up_anywhere_in_a_first_call_leaves_no_half_registered_mobile(
    make_trucker, phone, db, sms
) -> None:
    mobile = "91234567"

    def token_then_sms(trucker: Trucker) -> Callable[[], str]:
        used: list[int] = []

        def code() -> str:
            used.append(1)
            return trucker.code() if len(used) == 1 else sms.last_code(mobile)

        return code

    async def check(trucker: Trucker, position: int, complete: Any) -> None:
        account = await account_row(db, trucker.account)
        verified = position_of(complete, "ivrs/register/done")
        accepted = max(
            i for i, e in enumerate(complete.exchanges) if "ivrs/terms/menu" in e.command
        )
        # The mobile is either not there or the whole verified number, never a pending one.
        assert account.mobile == (mobile if position >= verified else None), position
        # Accepted on the `1` read by the WAIT FOR DIGIT after the last terms menu.
        assert (account.terms_version_accepted is not None) == (position > accepted + 1), position

    await hang_up_everywhere(
        {"make_trucker": make_trucker, "phone": phone, "db": db},
        lambda t: f"3 {t.login_keys()} {mobile} 1 {{totp}} 1 * 9",  # fixed lengths: no `#`
        check,
        totp=token_then_sms,
        needs_activation=True,
    )
