"""More calls on a real Asterisk: hang-ups at each point of a command, a wrong code then a good
one, the first call (mobile, SMS code, terms), classic AGI, listening in with ChanSpy, and the
simulator's command sequence against Asterisk's for the same keys."""

from __future__ import annotations

import re
import secrets

import pytest

from ami_client import Ami as ProjectAmi
from ami_client import listen_in
from backend.database import Database
from simulator import place_call
from tests.asterisk import driver
from tests.asterisk.calls import closed_call, handler_lines, leave, logged_line, login
from tests.asterisk.driver import Ami, Step, place, steps, variable_set
from tests.asterisk.stack import Stack, make_trucker

MOBILE = "91234567"


async def hung_up(stack: Stack, db: Database, call: driver.Call, stage: str) -> None:
    """What a hang-up must leave: AGISTATUS=HANGUP, the call log closed at `stage` as hung
    up, the hang-up handler run once."""
    await call.ended()
    logged = await closed_call(db, call.uniqueid)
    assert (logged.outcome, logged.last_stage) == ("caller_hung_up", stage)
    assert variable_set(call, "AGISTATUS") == ["HANGUP"]
    assert len(await handler_lines(stack, call)) == 1
    assert not [line for line in call.verbose_of(stack.asterisk.log()) if "AGISTATUS" in line]


async def test_a_hangup_during_a_prompt(stack: Stack, ami: Ami, db: Database) -> None:
    call = await place(ami)
    await call.run(steps(("language.menu", "3")))
    await call.wait_prompt("login.account")
    await call.hangup_caller()
    await hung_up(stack, db, call, "login")


async def test_a_hangup_during_get_data(stack: Stack, ami: Ami, db: Database) -> None:
    call = await place(ami)
    await call.run(steps(("language.menu", "3"), ("login.account", "1")))
    await call.wait_command("GET DATA ")
    await call.hangup_caller()
    await hung_up(stack, db, call, "login")


async def test_a_hangup_between_commands(stack: Stack, ami: Ami, db: Database) -> None:
    t = await make_trucker(db)
    call = await place(ami, code=t.code)
    after = await call.run(login(t))
    # The code is keyed: the server now asks the backend, and sends no command meanwhile.
    await ami.wait_for(
        lambda e: (
            e.get("Event") == "AGIExecEnd"
            and call.mine(e)
            and e.get("Command", "").startswith("GET DATA")
        ),
        after,
    )
    await call.hangup_caller()
    await call.ended()
    logged = await closed_call(db, call.uniqueid)
    # Hung up while the login was asked, or once it answered, before the vehicle was asked.
    assert logged.outcome == "caller_hung_up"
    assert logged.last_stage in ("login", "bundle_start", "vehicle")
    assert variable_set(call, "AGISTATUS") == ["HANGUP"]
    assert len(await handler_lines(stack, call)) == 1


async def test_a_wrong_code_then_a_good_one(stack: Stack, ami: Ami, db: Database) -> None:
    t = await make_trucker(db)
    call = await place(ami, code=t.code)
    wrong = login(t, t.wrong_code())
    again = steps(("login.password", t.password + "#"), ("login.token", "{totp}#"))
    await call.run([*wrong, Step("login.failed", ""), *again, *leave()])
    await call.wait_prompt("call.goodbye")
    await call.ended()
    assert (await closed_call(db, call.uniqueid)).outcome == "completed"
    # The account number was kept: asked once, the password and code twice.
    asked = [c.split(" ")[2] for c in call.commands() if c.startswith("STREAM FILE ivrs/login/")]
    assert [f for f in asked if f != "ivrs/login/failed"] == [
        "ivrs/login/account",
        "ivrs/login/password",
        "ivrs/login/token",
        "ivrs/login/password",
        "ivrs/login/token",
    ]
    logins = [
        e
        for e in stack.get(f"/v1/calls/{(await closed_call(db, call.uniqueid)).id}")["events"]
        if e["kind"] == "backend" and e["name"] == "login"
    ]
    assert [e["detail"]["result"] for e in logins] == ["login_failed", "ok"]


def sms_code(stack: Stack, mobile: str) -> str:
    for message in reversed(stack.sms()):
        if message["mobile"].endswith(mobile) and (
            m := re.search(r"code is (\d+)", message["text"])
        ):
            return m.group(1)
    raise AssertionError(f"no SMS code sent to {mobile}")


async def test_the_first_call_registers_the_mobile_with_its_sms_code_and_accepts_the_terms(
    stack: Stack, ami: Ami, db: Database
) -> None:
    t = await make_trucker(db, needs_activation=True)
    call = await place(ami, code=t.code, sms=lambda: sms_code(stack, MOBILE))
    await call.run(
        [
            *login(t),
            *steps(
                ("register.mobile", MOBILE),  # 8 digits: submits itself
                ("register.mobile_confirm", "1"),
                ("register.sms_code", "{sms}"),  # 6 digits: submits itself
                ("terms.menu", "1"),
            ),
            *leave(),
        ]
    )
    await call.wait_prompt("call.goodbye")
    await call.ended()
    assert (await closed_call(db, call.uniqueid)).outcome == "completed"
    assert len([c for c in call.commands() if c.startswith("STREAM FILE ivrs/register/done ")]) == 1


async def test_classic_agi_runs_the_same_flow(stack: Stack, ami: Ami, db: Database) -> None:
    t = await make_trucker(db)
    call = await place(ami, extension="classic", context="ivrs-test-driven", code=t.code)
    await call.run([*login(t), *leave()])
    await call.wait_prompt("call.goodbye")
    await call.ended()
    assert (await closed_call(db, call.uniqueid)).outcome == "completed"
    await logged_line(stack, f"<{call.channel}>AGI Script ")
    assert 'EXEC StopMixMonitor ""' in call.commands()  # no AMI in a classic script


async def test_a_supervisor_listens_in_with_chanspy(stack: Stack, ami: Ami) -> None:
    call = await place(ami)
    await call.wait_prompt("language.menu")
    project = ProjectAmi("127.0.0.1", stack.asterisk.ports.ami, "ivrs", stack.asterisk.ami_secret)
    await project.start()
    try:
        assert await project.wait_ready(10)
        reply = await listen_in(project, call.channel, "supervisor", "ivrs-test-standins")
        assert reply.get("Response") == "Success", reply
        _, spying = await ami.wait_for(
            lambda e: e.get("Event") == "ChanSpyStart" and e.get("SpyeeUniqueid") == call.uniqueid,
            call.start,
        )
        assert spying["SpyerChannel"].startswith("Local/supervisor@ivrs-test-standins")
        await call.hangup_caller()
        await ami.wait_for(
            lambda e: e.get("Event") == "Hangup" and e.get("Channel") == spying["SpyerChannel"],
            call.start,
        )
    finally:
        await project.close()


# A value read back (the CCRN, the reference, the crossing time): the server's fragments.
VALUE_FILE = re.compile(r"^STREAM FILE (digits|say)/\S+ ")


def comparable(commands: list[str]) -> list[str]:
    """The commands, with what differs between two truckers' calls left out: the recording's
    file name (it holds the uniqueid), the values read back (a run of fragments, its length
    varies with the value: "two p.m.", "two oh five p.m."), and `call.hold`, played only when
    the backend happens to take over 2.5 s, whatever the keys."""
    out: list[str] = []
    for command in commands:
        if command.startswith("STREAM FILE ivrs/call/hold "):
            continue
        command = re.sub(r"^EXEC MixMonitor .*", "EXEC MixMonitor <file>,a", command)
        if VALUE_FILE.match(command):
            command = "STREAM FILE <value>"
            if out and out[-1] == command:
                continue
        out.append(command)
    return out


# The simulator's key script, and the same keys for the real call: (prompt, keys) after login.
# An account number submits itself; `*` at the vehicle leads to the main menu; silence after
# the receipt ends the call.
SCRIPTS = {
    "login": (
        "3 {account} {password}# {totp}# * 9",
        [("vehicle.letters", "*"), ("menu.main", "9")],
    ),
    "bundle": (
        "3 {account} {password}# {totp}# 2122# 1234# 1 {ccrn}# 2 .",
        [
            ("vehicle.letters", "2122#"),
            ("vehicle.digits", "1234#"),
            ("vehicle.confirm", "1"),
            ("bundle.ccrn", "{ccrn}#"),
            ("bundle.more", "2"),
        ],
    ),
}


@pytest.mark.parametrize("script", SCRIPTS)
async def test_the_simulator_sends_the_commands_asterisk_sends(
    stack: Stack, ami: Ami, db: Database, script: str
) -> None:
    """The same key script, typed as the simulator types it (each entry once its prompt has
    played), on both; the server without AMI for both, so the mute goes over AGI. Both callers
    are numbers the backend has not seen: both hear the language menu."""
    keys, after_login = SCRIPTS[script]
    real, simulated = await make_trucker(db), await make_trucker(db)
    call = await place(ami, extension="no-ami", context="ivrs-test-driven", code=real.code)
    rest = [Step(p, k.replace("{ccrn}", real.ccrns[0]), listen=True) for p, k in after_login]
    await call.run([*login(real, listen=True), *rest])
    await call.wait_prompt("call.goodbye")
    await call.ended()
    record = await place_call(
        "127.0.0.1",
        stack.asterisk.ports.agi_without_ami,
        keys=keys.format(
            account=simulated.account,
            password=simulated.password,
            ccrn=simulated.ccrns[0],
            totp="{totp}",
        ),
        totp=simulated.code,
        caller_id=f"6{secrets.randbelow(10**7):07d}",
        variables={"IVRS_HELPDESK_DIAL": "Local/helpdesk@ivrs-test-standins"},
    )
    assert comparable(call.commands()) == comparable([e.command for e in record.exchanges])


async def test_a_known_caller_number_skips_the_language_menu(
    stack: Stack, ami: Ami, db: Database
) -> None:
    """The language of the number's last call is spoken at once; `*` at the account number
    still leads to the language menu."""
    number = f"5{secrets.randbelow(10**7):07d}"
    first = await place(ami, caller_id=number)
    await first.run(steps(("language.menu", "3")))
    await first.wait_prompt("login.account")
    await first.hangup_caller()
    await first.ended()
    await closed_call(db, first.uniqueid)
    again = await place(ami, caller_id=number)
    await again.run(steps(("language.remembered", ""), ("login.account", "*")))
    await again.wait_prompt("language.menu")
    await again.hangup_caller()
    await again.ended()
    commands = again.commands()
    languages = [c for c in commands if c.startswith("SET VARIABLE CHANNEL(language) ")]
    assert languages[0] == 'SET VARIABLE CHANNEL(language) "en"'  # asked of nobody
    account = next(i for i, c in enumerate(commands) if "ivrs/login/account" in c)
    assert not [c for c in commands[:account] if "ivrs/language/menu" in c]
    assert not [c for c in commands if "ivrs/call/keys" in c]  # heard on the first call
