"""A first call whose SMS code goes through Twilio's API (a stand-in on loopback,
tests/test_sms_senders.py), over the real FastAGI server and backend, the IVR waiting for the
backend as long as in production (5 s): the caller hears the code could not be sent and is
offered the helpdesk when the provider refuses it or is down, and is never left in silence over
4 s, even by a provider that never answers (whose code may still arrive and be used)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from backend.app import RunningBackend, start_backend
from backend.settings import BackendSettings
from simulator import CallRecord
from simulator.call_record import Command
from tests.support.sms_standins import StandIn, standing_in
from tests.support.stored import stored_call
from tests.support.truckers import MakeTrucker, Trucker

MOBILE = "91234567"
SILENCE_LIMIT = 4.0  # seconds: docs/call-flow.md, 3


@pytest.fixture
async def provider() -> AsyncIterator[StandIn]:
    async with standing_in("twilio") as stand_in:
        yield stand_in


@pytest.fixture
async def backend(
    backend_settings: BackendSettings, provider: StandIn
) -> AsyncIterator[RunningBackend]:
    """The backend with the sender its settings name: Twilio, at the stand-in."""
    settings = replace(backend_settings, sms_sender="twilio", sms_gateway=provider.gateway())
    running = await start_backend(settings, "127.0.0.1", 0)
    yield running
    await running.stop()


@pytest.fixture
def backend_timeout() -> float:
    return 5.0  # the IVR's default: the SMS send time (3 s) must fit well within it


class Gaps:
    """The longest real time between two commands of a call: the caller's longest silence
    (prompts take no real time in the simulator; only the server's waits do)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, command: Command) -> None:
        self.times.append(time.monotonic())

    @property
    def longest(self) -> float:
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


async def first_call(
    phone: Callable[..., Any], trucker: Trucker, provider: StandIn, keys: str, **options: Any
) -> tuple[CallRecord, Gaps]:
    typed: list[str] = []

    def token_then_sms() -> str:  # {totp}: the token's code, then the code Twilio was given
        typed.append("")
        return trucker.code() if len(typed) == 1 else provider.received[-1].code or ""

    gaps = Gaps()
    keys = f"3 {trucker.login_keys()} {MOBILE}# 1 {keys}"
    record = await phone(keys, None, totp=token_then_sms, on_command=gaps, **options)
    return record, gaps


@pytest.mark.parametrize("script", [["refuse"], ["down"]], ids=["refused", "down"])
async def test_an_unsent_code_is_said_and_ends_the_call(
    make_trucker: MakeTrucker, phone: Any, db: Any, provider: StandIn, script: list[str]
) -> None:
    provider.script = script
    trucker = await make_trucker(needs_activation=True)
    record, gaps = await first_call(phone, trucker, provider, "")
    ids = record.prompt_ids
    assert ids[ids.index("register.mobile_confirm") + 1 :] == [
        "register.sms_failed",
        "call.goodbye",
    ]
    assert "3669 0000" in record.said[-2]  # the helpdesk's number
    assert (await stored_call(db, record.uniqueid)).outcome == "sms_not_sent"
    sent = len(provider.received)
    assert sent == 1 if script == ["refuse"] else 2 <= sent <= 4  # no retry, or bounded ones
    assert gaps.longest < SILENCE_LIMIT


async def test_the_helpdesk_takes_the_caller_when_the_dialplan_has_one(
    make_trucker: MakeTrucker, phone: Any, db: Any, provider: StandIn
) -> None:
    provider.script = ["refuse"]
    trucker = await make_trucker(needs_activation=True)
    record, _ = await first_call(  # 7: the helpdesk key, at the offer after the refusal
        phone, trucker, provider, "7", variables={"IVRS_HELPDESK_DIAL": "Local/36690000@helpdesk"}
    )
    ids = record.prompt_ids
    assert ids[ids.index("register.sms_failed") :] == [
        "register.sms_failed",
        "call.helpdesk_offer",
        "call.transfer",
    ]
    assert record.variables.get("IVRS_TRANSFER") == "helpdesk"
    assert (await stored_call(db, record.uniqueid)).outcome == "transferred_to_helpdesk"


async def test_a_provider_that_never_answers_leaves_no_long_silence_and_sends_once(
    make_trucker: MakeTrucker, phone: Any, db: Any, provider: StandIn
) -> None:
    provider.script = ["hang"]  # it took the request, and says nothing for 30 s
    trucker = await make_trucker(needs_activation=True)
    record, gaps = await first_call(phone, trucker, provider, "{totp}# 1 9")
    assert gaps.longest < SILENCE_LIMIT
    ids = record.prompt_ids
    # The code may have been sent: the caller is asked for it, and it works when it arrives.
    after = ids[ids.index("register.mobile_confirm") + 1 :]
    assert [i for i in after if i != "call.hold"][0] == "register.sms_code"  # hold while it waits
    assert "register.done" in ids
    assert len(provider.received) == 1


async def test_a_code_delivered_through_twilio_registers_the_mobile(
    make_trucker: MakeTrucker, phone: Any, provider: StandIn
) -> None:
    trucker = await make_trucker(needs_activation=True)
    record, gaps = await first_call(phone, trucker, provider, "{totp}# 1 9")
    assert "register.done" in record.prompt_ids and "terms.menu" in record.prompt_ids
    assert len(provider.received) == 1 and gaps.longest < SILENCE_LIMIT
