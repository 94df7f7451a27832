"""The call flow of docs/call-flow.md as small stages. Each reads like the script a caller hears;
the helpers in `ivr.call` own retries, timeouts, `*` back, read-back and hang-up."""

from __future__ import annotations

import asyncio
import contextlib

from backend_client import AccountInfo, BackendError, BackendUnavailable, ServiceStatus
from formats import (
    HONG_KONG_MARKS,
    PASSWORD_DIGITS,
    TOKEN_CODE_DIGITS,
    cargo_number_kind,
    is_account_number,
    is_ccrn,
    is_hong_kong_mobile,
    is_vehicle_mark,
    keypad_letter,
)
from ivr.call import Call, CallEnded, GoBack, ServerClosing, close_quietly
from ivr.channel import CallerHungUp

LANGUAGES = {"1": "zh_HK", "2": "zh_CN", "3": "en"}
DEFAULT_LANGUAGE = "zh_HK"

# Backend error codes -> the prompt that explains them (one table, docs/call-flow.md).
ERROR_PROMPTS = {
    "login_failed": "login.failed",
    "locked": "login.locked",
    "token_expired": "login.token_expired",
    "no_service": "login.no_service",
    "ccrn_unknown": "bundle.ccrn_unknown",
    "ccrn_taken": "bundle.ccrn_taken",
    "ccrn_expired": "bundle.ccrn_expired",
    "invalid_request": "bundle.ccrn_invalid",
    "bundle_not_found": "unbundle.not_found",
    "mobile_invalid": "register.mobile_invalid",
    "sms_code_wrong": "register.sms_code_wrong",
}
SMS_CODE_TRIES = 3  # wrong codes before the caller is offered a new code
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
    opening = call.open_log(DEFAULT_LANGUAGE)  # while the language menu plays: no wait
    status = asyncio.create_task(call.backend.service_status())
    outcome = "completed"
    try:
        # First command: tells the dialplan the server was reached, so its "service
        # unavailable" fallback plays only when AGISTATUS=FAILURE came from a refused
        # connection, not from a missing prompt (transcript 08).
        await call.channel.set_var("IVRS_STARTED", "1")
        call.helpdesk = await call.channel.get_var("IVRS_HELPDESK_DIAL")
        await call.channel.answer()
        await choose_language(call)
        await call.say("welcome")
        call.call_id = await opening
        await suspension_notice(call, await status)
        info = await login(call)
        if info.needs_activation:
            await first_call(call, info)
        await main_menu(call)
        await call.say("call.goodbye")
    except CallerHungUp:
        outcome = "caller_hung_up"
    except ServerClosing:  # the FastAGI server is shutting down (ivr/server.py)
        outcome = "server_shutdown"
        with contextlib.suppress(CallerHungUp):
            await call.say("call.goodbye")
    except asyncio.CancelledError:  # cut off: shutting down, and the call never got to goodbye
        outcome = "server_shutdown"
        raise
    except CallEnded as ended:
        outcome = ended.outcome
    except (BackendUnavailable, BackendError) as e:  # an unmapped error is a fault too
        outcome = "backend_unavailable"
        call.log.warning("backend_unavailable", error=str(e))
        with contextlib.suppress(CallerHungUp):
            await call.say("error.service_unavailable")
            await call.say("call.goodbye")
    finally:
        status.cancel()
        call.events.add("stage", "end", outcome=outcome)
        await close_quietly(call, outcome)
        call.log.info("call_ended", outcome=outcome, last_stage=call.stage)
    return outcome


async def suspension_notice(call: Call, status: ServiceStatus) -> None:
    """During a configured suspension the caller hears when it ends, then the call ends."""
    if status.suspended:
        call.enter("suspended")
        await call.say("notice.suspended", start=status.start, end=status.end)
        raise CallEnded("service_suspended")


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
            async with call.secret_entry():  # the recording is muted from here to the code
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


async def first_call(call: Call, info: AccountInfo) -> None:
    """Once per migrated account: register a Hong Kong mobile, then accept the terms."""
    if not info.mobile_registered:
        call.enter("register")
        await call.say("register.intro")
        await register_mobile(call)
    if not info.terms_accepted:
        call.enter("terms")
        await accept_terms(call)


async def register_mobile(call: Call) -> None:
    while True:  # one pass per mobile number entered
        mobile = await call.ask(
            "register.mobile",
            length=(8, 8),
            valid=is_hong_kong_mobile,
            invalid_prompt="register.mobile_invalid",
        )
        if not await call.confirm("register.mobile_confirm", digits=mobile):
            continue
        try:
            await send_sms_code(call, mobile)
        except GoBack:
            continue  # the backend refused the number: enter it again
        if await enter_sms_code(call, mobile):
            await call.say("register.done")
            return


async def send_sms_code(call: Call, mobile: str) -> None:
    try:
        await call.backend.register_mobile(call.account or "", mobile, call.call_id)
    except BackendError as e:
        call.events.add("backend", "register_mobile", result=e.code)
        if e.code == "sms_code_limit":  # at most 3 codes a call
            await call.say("call.too_many_errors")
            await call.say("call.goodbye")
            raise CallEnded("sms_code_limit") from None
        await call.say(prompt_for(e))
        raise GoBack() from None
    call.events.add("backend", "register_mobile", result="sent")


async def enter_sms_code(call: Call, mobile: str) -> bool:
    """True when the mobile is registered; False to enter a different number."""
    wrong = 0
    while True:
        async with call.secret_entry():
            code = await call.ask("register.sms_code", length=(6, 6), secret=True)
        try:
            await call.backend.verify_mobile(call.account or "", code, call.call_id)
            call.events.add("backend", "verify_mobile", result="ok")
            return True
        except BackendError as e:
            call.events.add("backend", "verify_mobile", result=e.code)
            await call.say(prompt_for(e))
        wrong += 1
        if wrong < SMS_CODE_TRIES:
            continue
        choice = await call.menu("register.sms_resend", {"1": "resend", "2": "other", "9": "end"})
        if choice == "other":
            return False
        if choice == "end":
            await call.say("call.goodbye")
            raise CallEnded("registration_abandoned")
        await send_sms_code(call, mobile)
        wrong = 0


async def accept_terms(call: Call) -> None:
    await call.say("terms.intro")
    while True:
        choice = await call.menu(
            "terms.menu", {"1": "accept", "2": "summary", "3": "full", "9": "decline"}
        )
        if choice == "summary":
            await call.say("terms.intro")
        elif choice == "full":
            await call.say("terms.full")
        elif choice == "decline":
            call.events.add("input", "terms", result="declined")
            await call.say("terms.declined")
            raise CallEnded("terms_declined")
        else:
            version = await call.backend.terms_version()
            await call.backend.accept_terms(call.account or "", version, call.call_id)
            call.events.add("backend", "accept_terms", version=version)
            return


async def main_menu(call: Call) -> None:
    stages = {"1": bundle, "2": unbundle, "3": enquiry, "8": change_language, "9": None}
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
    recent = await call.backend.recent_vehicles(call.account or "")
    if recent:  # the last vehicles used, on keys 1-3; 9 enters another
        choices: dict[str, str | None] = {str(n): m for n, m in enumerate(recent[:3], 1)}
        chosen = await call.menu(
            "vehicle.recent",
            choices | {"9": None},
            mark=list(choices.values()),
            count=[int(k) for k in choices],
        )
        if chosen is not None:
            return chosen
    failures = 0
    while True:
        letters = await ask_letters(call)
        number = await call.ask(
            "vehicle.digits",
            length=(1, 4),
            valid=lambda n: not n.startswith("0"),  # 1-9999, no leading zero
            invalid_prompt="vehicle.invalid",
        )
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


async def unbundle(call: Call) -> None:
    vehicle = await ask_vehicle(call)
    call.enter("unbundle")
    if await call.menu("unbundle.menu", {"1": "one", "2": "all"}) == "one":
        await unbundle_one(call, vehicle)
        return
    bundles = await call.backend.bundles(call.account or "", vehicle)
    count = sum(len(b.ccrns) for b in bundles)
    if count == 0:
        await call.say("unbundle.not_found")
        return
    if not await call.confirm("unbundle.confirm_all", count=count, mark=vehicle):
        return
    await cancel(call, vehicle, None)


async def unbundle_one(call: Call, vehicle: str) -> None:
    failures = 0
    while True:
        ccrn = await call.ask(
            "unbundle.ccrn", length=(12, 12), valid=is_ccrn, invalid_prompt="bundle.ccrn_invalid"
        )
        if not await call.confirm("bundle.ccrn_confirm", digits=ccrn):
            continue
        if await cancel(call, vehicle, ccrn):
            return
        failures += 1
        await call.retry_or_end(failures, "unbundle.not_found")


async def cancel(call: Call, vehicle: str, ccrn: str | None) -> bool:
    """Cancel one CCRN or all on the vehicle; False when there was no such bundle."""
    try:
        cancelled = await call.backend.unbundle(
            call.account or "", vehicle, ccrn, call.call_id, call.step_key()
        )
    except BackendError as e:
        call.events.add("backend", "unbundle", result=e.code)
        if e.code != "bundle_not_found":
            raise BackendUnavailable(f"unexpected backend error {e.code}") from e
        if ccrn is None:
            await call.say("unbundle.not_found")
        return False
    call.events.add("backend", "unbundle", result="ok", cancelled=len(cancelled))
    call.log.info("bundle_cancelled", vehicle=vehicle, ccrns=len(cancelled))
    await call.say("unbundle.done")
    return True


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
