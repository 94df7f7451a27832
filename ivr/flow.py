"""The call flow of CALL_FLOW.md as small stages. Each reads like the script a caller hears;
the helpers in `ivr.call` own retries, timeouts, `*` back, read-back and hang-up."""

from __future__ import annotations

import asyncio
import contextlib

from backend_client import AccountInfo, BackendError, BackendUnavailable
from formats import (
    HONG_KONG_MARKS,
    PASSWORD_DIGITS,
    TOKEN_CODE_DIGITS,
    cargo_number_kind,
    is_account_number,
    is_vehicle_mark,
    keypad_letter,
)
from ivr.call import Call, CallEnded, GoBack, close_quietly
from ivr.channel import CallerHungUp

LANGUAGES = {"1": "zh_HK", "2": "zh_CN", "3": "en"}
DEFAULT_LANGUAGE = "zh_HK"

# Backend error codes -> the prompt that explains them (one table, CALL_FLOW.md).
ERROR_PROMPTS = {
    "login_failed": "login.failed",
    "locked": "login.locked",
    "token_expired": "login.token_expired",
    "no_service": "login.no_service",
    "ccrn_unknown": "bundle.ccrn_unknown",
    "ccrn_taken": "bundle.ccrn_taken",
    "ccrn_expired": "bundle.ccrn_expired",
    "invalid_request": "bundle.ccrn_invalid",
}
# Login answers after which the call ends (the prompt says why).
LOGIN_ENDS_CALL = {"locked", "token_expired", "no_service"}


def prompt_for(error: BackendError) -> str:
    """The prompt for a backend error code; an unknown code is a fault of the service."""
    try:
        return ERROR_PROMPTS[error.code]
    except KeyError:
        raise BackendUnavailable(f"unexpected backend error {error.code}") from error


async def run_call(call: Call) -> str:
    """The whole call, from answer to goodbye; returns the outcome stored in the call log."""
    opening = asyncio.create_task(
        call.backend.open_call(
            call.uniqueid,
            call.hotline,
            call.caller_id,
            call.channel.headers.get("agi_channel"),
            DEFAULT_LANGUAGE,
        )
    )  # opened while the language menu plays: the caller never waits for it
    outcome = "completed"
    try:
        # First command: tells the dialplan the server was reached, so its "service
        # unavailable" fallback plays only when AGISTATUS=FAILURE came from a refused
        # connection, not from a missing prompt (transcript 08).
        await call.channel.set_var("IVRS_STARTED", "1")
        await call.channel.answer()
        await choose_language(call)
        await call.say("welcome")
        call.call_id = await opening
        await login(call)
        await main_menu(call)
        await call.say("call.goodbye")
    except CallerHungUp:
        outcome = "caller_hung_up"
    except CallEnded as ended:
        outcome = ended.outcome
    except BackendUnavailable as e:
        outcome = "backend_unavailable"
        call.log.warning("backend_unavailable", error=str(e))
        with contextlib.suppress(CallerHungUp):
            await call.say("error.service_unavailable")
            await call.say("call.goodbye")
    finally:
        if call.call_id is None:
            with contextlib.suppress(Exception):
                call.call_id = await asyncio.wait_for(opening, call.settings.backend_timeout)
        call.events.add("stage", "end", outcome=outcome)
        await close_quietly(call, outcome)
        call.log.info("call_ended", outcome=outcome, last_stage=call.stage)
    return outcome


async def choose_language(call: Call) -> None:
    call.enter("language")
    call.language = await call.menu("language.menu", LANGUAGES, on_silence=DEFAULT_LANGUAGE)
    await call.channel.set_var("CHANNEL(language)", call.language)  # SAY speaks this language


async def login(call: Call) -> AccountInfo:
    call.enter("login")
    failures = 0
    while True:
        try:
            account = await call.ask("login.account", length=(8, 8), valid=is_account_number)
            password = await call.ask("login.password", length=PASSWORD_DIGITS, secret=True)
            code = await call.ask("login.token", length=TOKEN_CODE_DIGITS, secret=True)
        except GoBack:
            continue  # `*` starts the login again
        try:
            info = await call.backend.login(account, password, code, call.call_id, call.caller_id)
        except BackendError as e:
            prompt = prompt_for(e)
            call.events.add("backend", "login", result=e.code)
            if e.code in LOGIN_ENDS_CALL:
                await call.say(prompt)
                await call.say("call.goodbye")
                raise CallEnded(e.code) from None
            failures += 1
            await call.say(prompt)
            if failures >= call.settings.max_failures:
                await call.say("call.goodbye")
                raise CallEnded("login_failed") from None
            continue
        call.account = account
        call.log = call.log.bind(account=account)
        call.events.add("backend", "login", result="ok", account=account)
        return info


async def main_menu(call: Call) -> None:
    stages = {"1": bundle, "3": enquiry, "8": change_language, "9": None}
    while True:
        call.enter("menu")
        try:
            stage = await call.menu("menu.main", stages)
            if stage is None:
                return
            await stage(call)
        except GoBack:
            continue


async def change_language(call: Call) -> None:
    await choose_language(call)


async def ask_letters(call: Call) -> str:
    """Letters as key + position pairs (ITU E.161), each spoken back as soon as it is keyed."""
    inter_digit = call.settings.inter_digit_timeout_ms
    failures = 0
    while True:
        letters = ""
        key = await call.read_entry("vehicle.letters", 1)
        while key not in (None, "#"):
            if key == "*":
                raise GoBack()
            position = await call.channel.wait_digit(inter_digit)
            letter = keypad_letter(key, position or "")
            if letter is None:
                break
            letters += letter
            key = await call.channel.say_alpha(letter) or await call.channel.wait_digit(inter_digit)
        if key == "#" or (key is None and letters):
            call.events.add("input", "vehicle.letters", value=letters)
            return letters
        failures += 1
        await call.retry_or_end(failures, "error.no_input" if key is None else "error.invalid")


async def ask_vehicle(call: Call) -> str:
    call.enter("vehicle")
    failures = 0
    while True:
        letters = await ask_letters(call)
        number = await call.ask("vehicle.digits", length=(1, 4))
        mark = letters + number
        if not is_vehicle_mark(mark, HONG_KONG_MARKS):
            failures += 1
            await call.retry_or_end(failures, "vehicle.invalid")
            continue
        if await call.confirm("vehicle.confirm", mark=mark):
            return mark


async def ask_cargo_number(call: Call) -> str:
    """A CCRN or batch number: format and check digit checked here, before any backend call;
    read back; then checked with the backend so the caller hears a problem at once."""
    failures = 0
    while True:
        number = await call.ask(
            "bundle.ccrn",
            length=(10, 12),
            valid=lambda n: cargo_number_kind(n) is not None,
            invalid_prompt="bundle.ccrn_invalid",
        )
        if not await call.confirm("bundle.ccrn_confirm", digits=number):
            continue
        try:
            await call.backend.check_cargo(number)
        except BackendError as e:
            call.events.add("backend", "check_cargo", number=number, result=e.code)
            failures += 1
            await call.retry_or_end(failures, prompt_for(e))
            continue
        call.events.add("backend", "check_cargo", number=number, result="ok")
        return number


async def bundle(call: Call) -> None:
    vehicle = await ask_vehicle(call)
    call.enter("bundle")
    numbers = [await ask_cargo_number(call)]
    while True:
        while await call.menu("bundle.more", {"1": True, "2": False}):
            numbers.append(await ask_cargo_number(call))
        call.enter("bundle_submit")
        numbers = list(dict.fromkeys(numbers))  # the same number keyed twice counts once
        try:
            receipt = await call.backend.bundle(
                call.account or "", vehicle, numbers, call.call_id, call.step_key()
            )
            break
        except BackendError as e:
            # Lost a race, or the cargo changed since it was checked: drop the number named
            # and let the caller go on with the rest.
            call.events.add("backend", "bundle", result=e.code)
            await call.say(prompt_for(e))
            failing = str(e.detail.get("ccrn") or e.detail.get("number") or "")
            numbers = [n for n in numbers if n != failing] if failing in numbers else []
            if not numbers:
                numbers = [await ask_cargo_number(call)]
    call.events.add("backend", "bundle", result="ok", reference=receipt.reference)
    call.log.info("bundle_submitted", reference=receipt.reference, vehicle=vehicle)
    call.enter("bundle_done")
    while await call.menu(
        "bundle.submitted",
        {"1": True, "2": False},
        digits=receipt.reference,
        time=receipt.earliest_crossing,
    ):
        pass


async def enquiry(call: Call) -> None:
    vehicle = await ask_vehicle(call)
    call.enter("enquiry")
    bundles = await call.backend.bundles(call.account or "", vehicle)
    call.events.add("backend", "enquiry", vehicle=vehicle, bundles=len(bundles))
    if not bundles:
        await call.say("enquiry.none", mark=vehicle)
        return
    await call.say(
        "enquiry.result",
        mark=vehicle,
        count=sum(len(b.ccrns) for b in bundles),
        time=max(b.earliest_crossing for b in bundles),
    )
