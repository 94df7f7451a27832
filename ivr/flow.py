"""The call flow of docs/call-flow.md as small stages. Each reads like the script a caller hears;
the helpers in `ivr.call` own retries, timeouts, `*` back, read-back and hang-up."""

from __future__ import annotations

import asyncio
import contextlib

from backend_client import AccountInfo, BackendError, BackendUnavailable, CallOpened, ServiceStatus
from formats import (
    PASSWORD_DIGITS,
    TOKEN_CODE_DIGITS,
    is_account_number,
    is_hong_kong_mobile,
)
from ivr.call import HELPDESK_VARIABLE, Call, CallEnded, GoBack, ServerClosing, close_quietly
from ivr.channel import CallerHungUp
from ivr.refusals import prompt_for
from ivr.services import bundle, enquiry, unbundle

LANGUAGES = {"1": "zh_HK", "2": "zh_CN", "3": "en"}
DEFAULT_LANGUAGE = "zh_HK"
REMEMBERED_WAIT_S = 1.0  # for the caller's last language; later, the language menu is asked

SMS_CODE_TRIES = 3  # wrong codes before the caller is offered a new code
# Login answers after which the call cannot go on (the prompt says what to do next).
LOGIN_ENDS_CALL = {"locked", "token_expired", "no_service"}


async def run_call(call: Call) -> str:
    """The whole call, from answer to goodbye; returns the outcome stored in the call log."""
    # One request opens the call log and answers what the first prompts need: the caller
    # number's last language, and whether the service is suspended.
    opening = call.open_log(DEFAULT_LANGUAGE)  # while the language menu plays: no wait
    outcome = "completed"
    try:
        # First command: tells the dialplan the server was reached, so its "service
        # unavailable" fallback plays only when AGISTATUS=FAILURE came from a refused
        # connection, not from a missing prompt (transcript 08).
        await call.channel.set_var("IVRS_STARTED", "1")
        call.helpdesk = await call.channel.get_var(HELPDESK_VARIABLE)
        await call.channel.answer()
        # In a burst the opening waits behind the other calls' requests: the language menu
        # plays at once rather than after a silence spent waiting for it. An answer already
        # in hand is not waited for (Call.hold says why).
        if not opening.done() and not call.backend.congested:
            await asyncio.wait({opening}, timeout=REMEMBERED_WAIT_S)
        remembered = remembered_language(call, opening)
        await choose_language(call, remembered)
        if not remembered:  # the welcome comes only with the menu
            await call.say("welcome")
        opened = await call.hold(opening)
        call.call_id = opened.call_id
        await suspension_notice(call, opened.service)
        if remembered:  # a caller who has called before
            await call.say("language.remembered")  # `*` at the account number: the menu
        else:
            await call.say("call.keys")  # the helpdesk key, said once to each caller number
        info = await login_or_back(call)
        if info.needs_activation:
            await first_call(call, info)
        await main_menu(call)
        await call.end("completed")
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


def remembered_language(call: Call, opening: asyncio.Future[CallOpened]) -> str | None:
    """The language of this caller number's last call, if the call's opening has answered it
    (within REMEMBERED_WAIT_S, or at once in a burst: later, the language menu is asked)."""
    if call.caller_id is None or not opening.done() or opening.cancelled():
        return None
    if opening.exception() is not None:
        return None  # the caller hears the menu, then that the service is unavailable
    language = opening.result().language
    return language if language in LANGUAGES.values() else None


async def choose_language(call: Call, remembered: str | None = None) -> None:
    """The caller number's last language without asking; otherwise the language menu."""
    call.enter("language")
    if remembered:
        call.language = remembered
    else:
        call.language = await call.menu("language.menu", LANGUAGES, on_silence=DEFAULT_LANGUAGE)
    await call.channel.set_var("CHANNEL(language)", call.language)  # SAY speaks this language


async def login_or_back(call: Call) -> AccountInfo:
    """`*` at the account number goes back to the language menu."""
    while True:
        try:
            return await login(call)
        except GoBack:
            await choose_language(call)


async def login(call: Call) -> AccountInfo:
    """After a failed login the account number is kept: only the password and code are asked
    again (`*` at the password enters the account number again)."""
    call.enter("login")
    account: str | None = None
    failures = 0
    while True:
        if account is None:  # `*` here: back to the language (GoBack)
            account = await call.ask(
                "login.account",
                length=(8, 8),
                valid=is_account_number,
                invalid_prompt="login.account_invalid",
            )
        try:
            async with call.secret_entry():  # the recording is muted from here to the code
                password = await call.ask("login.password", length=PASSWORD_DIGITS, secret=True)
                code = await call.ask("login.token", length=TOKEN_CODE_DIGITS, secret=True)
        except GoBack:
            account = None
            continue
        try:
            info = await call.request(
                "login",
                call.backend.login(account, password, code, call.call_id, call.caller_id),
            )
        except BackendError as e:
            if e.code == "caller_throttled":  # this phone, not the account: when to try again
                minutes = int(e.detail.get("retry_after_minutes") or 30)
                await call.say(prompt_for(e), count=minutes)
                await call.dead_end(e.code)
            if e.code in LOGIN_ENDS_CALL:
                await call.dead_end(e.code, prompt_for(e))
            failures += 1
            if failures >= call.settings.max_failures:
                await call.dead_end("login_failed", prompt_for(e))
            await call.say(prompt_for(e))
            continue
        call.account = account
        call.log = call.log.bind(account=account)
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
            give_up=("no_hong_kong_mobile", "register.no_mobile"),
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
        await call.request(
            "register_mobile",
            call.backend.register_mobile(call.account_number, mobile, call.call_id),
        )
    except BackendError as e:
        if e.code == "sms_code_limit":  # at most 3 codes a call
            await call.dead_end("sms_code_limit", "call.too_many_errors")
        if e.code == "sms_not_sent":  # the SMS provider refused it or is down: the helpdesk
            await call.dead_end("sms_not_sent", "register.sms_failed")
        await call.say(prompt_for(e))
        raise GoBack() from None


async def enter_sms_code(call: Call, mobile: str) -> bool:
    """True when the mobile is registered; False to enter a different number."""
    wrong = 0
    while True:
        async with call.secret_entry():
            code = await call.ask("register.sms_code", length=(6, 6), secret=True)
        try:
            verifying = call.backend.verify_mobile(call.account_number, code, call.call_id)
            await call.request("verify_mobile", verifying)
            return True
        except BackendError as e:
            await call.say(prompt_for(e))
        wrong += 1
        if wrong < SMS_CODE_TRIES:
            continue
        choice = await call.menu("register.sms_resend", {"1": "resend", "2": "other", "9": "end"})
        if choice == "other":
            return False
        if choice == "end":
            await call.end("registration_abandoned")
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
            await call.say("terms.declined")  # its own goodbye
            raise CallEnded("terms_declined")
        else:
            version = await call.hold(call.backend.terms_version())
            accepting = call.backend.accept_terms(call.account_number, version, call.call_id)
            await call.request("accept_terms", accepting, version=version)
            return


async def main_menu(call: Call) -> None:
    """Straight to bundling (the service most calls are for); `*` there leads to the others."""
    call.enter("bundle_start")
    try:
        await bundle(call)  # ends the call: goodbye after the receipt
    except GoBack:
        pass
    stages = {"1": bundle, "2": unbundle, "3": enquiry, "9": None}
    while True:
        call.enter("menu")
        try:
            stage = await call.menu("menu.main", stages)
            if stage is None:
                return
            await stage(call)
        except GoBack:
            continue
