"""The services after login (docs/call-flow.md 5-7): the vehicle, bundling, cancelling a bundle,
and the enquiry. Stages hold only decisions; `ivr.call` owns input, retries and read-back."""

from __future__ import annotations

from backend_client import BackendError, BackendUnavailable, Bundle
from formats import HONG_KONG_MARKS, cargo_number_kind, is_ccrn, is_vehicle_mark
from ivr.call import KEY_REPEAT, Call, GoBack
from ivr.refusals import prompt_for

MAX_CCRNS = 50  # per submission (docs/call-flow.md, 6)


async def ask_vehicle(call: Call) -> str:
    call.enter("vehicle")
    recent = await call.hold(call.backend.recent_vehicles(call.account_number))
    if recent:  # the last vehicles used, most recent first on keys 1-3; 4 enters another
        choices: dict[str, str | None] = {str(n): m for n, m in enumerate(recent[:3], 1)}
        chosen = await call.menu(
            "vehicle.recent",
            choices | {"4": None},
            mark=list(choices.values()),
            count=[int(k) for k in choices],
        )
        if chosen is not None:
            return chosen
    else:
        await call.say("vehicle.other_services")
    failures = 0
    while True:
        letters = await call.letters("vehicle.letters")
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
    then checked with the backend so the caller hears a problem at once. It is read back at
    the next question (`bundle.more`), where 3 enters it again."""
    failures = 0
    while True:
        number = await call.ask(
            "bundle.ccrn",
            length=(10, 12),
            valid=lambda n: cargo_number_kind(n) is not None,
            invalid_prompt="bundle.ccrn_invalid",
        )
        try:
            await call.request("check_cargo", call.backend.check_cargo(number), number=number)
        except BackendError as e:
            failures += 1
            await call.retry_or_end(failures, prompt_for(e))
            continue
        return number


async def more_cargo(call: Call, numbers: list[str]) -> None:
    """Read back the last number with the next question: add another, submit, or enter the last
    one again. `*` (at the menu or in an entry) keeps every CCRN entered so far and comes back
    to the menu."""
    choices = {"1": "more", "2": "submit", "3": "again"}
    while True:
        try:
            choice = await call.menu("bundle.more", choices, digits=numbers[-1])
            if choice == "submit":
                return
            if choice == "again":  # the last one was misheard or mistyped: it is replaced
                numbers[-1] = await ask_cargo_number(call)
            elif len(numbers) >= MAX_CCRNS:
                await call.say("bundle.limit")  # the 50 entered stay
            else:
                numbers.append(await ask_cargo_number(call))
        except GoBack:
            continue


async def bundle(call: Call) -> None:
    """Bundle cargo to a vehicle; after the receipt, another vehicle or the end of the call."""
    while True:
        receipt = await bundle_one_vehicle(call)
        call.enter("bundle_done")
        choice = "again"
        while choice == "again":  # the caller may hang up as soon as the receipt is heard
            await call.say(
                "bundle.submitted", digits=receipt.reference, time=receipt.earliest_crossing
            )
            choice = await call.menu(
                "bundle.next",
                {"1": "another", KEY_REPEAT: "again"},
                on_silence="end",  # a silent caller has heard the receipt: goodbye
                patience=1,
            )
        if choice == "end":
            await call.end("completed")


async def bundle_one_vehicle(call: Call) -> Bundle:
    vehicle = await ask_vehicle(call)
    call.enter("bundle")
    numbers = [await ask_cargo_number(call)]
    while True:
        await more_cargo(call, numbers)
        call.enter("bundle_submit")
        numbers = list(dict.fromkeys(numbers))  # the same number keyed twice counts once
        try:
            submitting = call.backend.bundle(
                call.account_number, vehicle, numbers, call.call_id, call.step_key()
            )
            receipt = await call.request("bundle", submitting, vehicle=vehicle)
            break
        except BackendError as e:
            # Lost a race, or the cargo changed since it was checked: drop the number named
            # and let the caller go on with the rest.
            await call.say(prompt_for(e))
            failing = str(e.detail.get("ccrn") or e.detail.get("number") or "")
            numbers = [n for n in numbers if n != failing] if failing in numbers else []
            if not numbers:
                numbers = [await ask_cargo_number(call)]
    call.log.info("bundle_submitted", reference=receipt.reference, vehicle=vehicle)
    return receipt


async def unbundle(call: Call) -> None:
    vehicle = await ask_vehicle(call)
    call.enter("unbundle")
    if await call.menu("unbundle.menu", {"1": "one", "2": "all"}) == "one":
        await unbundle_one(call, vehicle)
        return
    bundles = await call.hold(call.backend.bundles(call.account_number, vehicle))
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
        cancelling = call.backend.unbundle(
            call.account_number, vehicle, ccrn, call.call_id, call.step_key()
        )
        cancelled = await call.request("unbundle", cancelling)
    except BackendError as e:
        if e.code != "bundle_not_found":
            raise BackendUnavailable(f"unexpected backend error {e.code}") from e
        if ccrn is None:
            await call.say("unbundle.not_found")
        return False
    call.log.info("bundle_cancelled", vehicle=vehicle, ccrns=len(cancelled))
    await call.say("unbundle.done")
    return True


async def enquiry(call: Call) -> None:
    vehicle = await ask_vehicle(call)
    call.enter("enquiry")
    bundles = await call.request("enquiry", call.backend.bundles(call.account_number, vehicle))
    if not bundles:
        await call.say("enquiry.none", mark=vehicle)
        return
    await call.say(
        "enquiry.result",
        mark=vehicle,
        count=sum(len(b.ccrns) for b in bundles),
        time=max(b.earliest_crossing for b in bundles),
    )
