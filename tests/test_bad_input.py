"""Bad input at every input prompt of a bundling call: a spoken reason, the same prompt again,
and the call still ends with the bundle made. Positions are generated from the call's own key
script, one bad entry inserted before each real one."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from backend.app import start_backend
from ivr.server import start_agi_server
from ivr.settings import IvrSettings
from simulator import place_call
from tests.support.truckers import Trucker

# The prompt each token of Trucker.bundle_keys() answers, in order.
PROMPTS = [
    "language.menu",
    "login.account",
    "login.password",
    "login.token",
    "vehicle.letters",
    "vehicle.digits",
    "vehicle.confirm",
    "bundle.ccrn",
    "bundle.more",
]
# Entry prompts and their longest valid entry.
ENTRIES = {
    "login.account": 8,
    "login.password": 12,
    "login.token": 8,
    "vehicle.digits": 4,
    "bundle.ccrn": 12,
}
INVALID_PROMPT = {
    "bundle.ccrn": "bundle.ccrn_invalid",
    "vehicle.digits": "vehicle.invalid",
    "login.account": "login.account_invalid",
}
FIXED_LENGTH = {"login.account"}  # submits itself at its length: never too long


def bad_inputs(prompt: str) -> list[tuple[str, str]]:
    """(bad token, the reason the caller should hear) for one prompt."""
    if prompt in ENTRIES:
        invalid = INVALID_PROMPT.get(prompt, "error.invalid")
        too_long = [] if prompt in FIXED_LENGTH else [("9" * (ENTRIES[prompt] + 1), invalid)]
        return [
            ("1#", invalid) if prompt != "vehicle.digits" else ("0#", invalid),  # too short
            *too_long,  # one digit too many
            ("#", "error.no_input"),  # `#` alone
            (".", "error.no_input"),  # silence
        ]
    if prompt == "vehicle.letters":
        return [("24", "error.invalid"), ("19", "error.invalid"), (".", "error.no_input")]
    return [("6", "error.invalid"), (".", "error.no_input")]  # a key the menu does not have


CASES = [
    (position, prompt, bad, reason)
    for position, prompt in enumerate(PROMPTS)
    for bad, reason in bad_inputs(prompt)
    # A `#` right after a complete fixed-length entry is swallowed, not an answer.
    if not (bad == "#" and position and PROMPTS[position - 1] in FIXED_LENGTH)
]


@pytest.mark.parametrize(
    ("position", "prompt", "bad", "reason"),
    CASES,
    ids=[f"{p}:{prompt}:{bad}" for p, prompt, bad, _ in CASES],
)
async def test_bad_input_is_explained_and_asked_again(
    position: int, prompt: str, bad: str, reason: str, make_trucker, phone
) -> None:
    trucker: Trucker = await make_trucker()
    tokens = trucker.bundle_keys().split()
    assert len(tokens) == len(PROMPTS)
    tokens.insert(position, bad)
    record = await phone(" ".join(tokens), trucker)
    seq = record.prompt_ids
    # The occurrence of `prompt` that got the bad token is followed by its reason, then itself.
    nth = PROMPTS[:position].count(prompt)
    at = [i for i, p in enumerate(seq) if p == prompt][nth]
    assert seq[at + 1 : at + 3] == [reason, prompt], seq[at : at + 4]
    assert "bundle.submitted" in seq and seq[-1] == "call.goodbye"


async def test_star_goes_back_one_step(make_trucker, phone) -> None:
    trucker: Trucker = await make_trucker()
    keys = f"3 {trucker.account}# * {trucker.login_keys()} {trucker.vehicle_keys} 1 * 9"
    record = await phone(keys, trucker)
    seq = record.prompt_ids
    assert seq[3:6] == ["login.account", "login.password", "login.account"]  # back to the start
    assert seq[-3:] == ["bundle.ccrn", "menu.main", "call.goodbye"]  # back to the main menu


async def test_suspension_notice_gives_the_window_and_ends_the_call(
    backend_settings, sms, clock
) -> None:
    now = clock.now()
    settings = replace(
        backend_settings,
        suspended_from=now - timedelta(hours=1),
        suspended_until=now + timedelta(hours=2),
    )
    backend = await start_backend(settings, "127.0.0.1", 0, sms_sender=sms)
    ivr_settings = replace(IvrSettings(), backend_url=backend.url, api_token=settings.api_token)
    agi = await start_agi_server(ivr_settings, port=0)
    try:
        record = await place_call(agi.host, agi.port, keys="3")
    finally:
        await agi.stop()
        await backend.stop()
    assert record.prompt_ids == ["language.menu", "welcome", "notice.suspended"]
    assert len(record.fragment_runs) == 2  # the start and the end of the window
    assert not record.hung_up and record.closed_by == "server"
