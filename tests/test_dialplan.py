"""The Asterisk dialplan (dialplan/extensions.conf): it lints clean, and a call to each hotline
reaches the FastAGI server the way tests/transcripts 05, 07 and 08 say it must.

Asterisk is not installed here, so a tiny reader of `exten =>`/`same =>` lines and a small
interpreter of the few applications that decide the path (Set, Goto, GotoIf, Hangup, Return)
walk a call through the contexts; every other application is recorded, not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr.call import HELPDESK_VARIABLE

DIALPLAN_DIR = Path(__file__).resolve().parent.parent / "dialplan"
EXTENSIONS_CONF = DIALPLAN_DIR / "extensions.conf"
HOTLINES = ("39023333", "31532265")
UNIQUEID = "1795420955.1"


# --- a tiny reader of extensions.conf ------------------------------------------------


@dataclass(frozen=True)
class Step:
    exten: str
    priority: int
    label: str | None
    app: str
    args: str
    line: int

    def argv(self) -> list[str]:
        """Arguments split at top-level commas (not inside ${...} or (...))."""
        parts, depth, current = [], 0, ""
        for ch in self.args:
            if ch in "({":
                depth += 1
            elif ch in ")}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        return [*parts, current]


@dataclass
class Dialplan:
    sections: list[str] = field(default_factory=list)
    globals: dict[str, str] = field(default_factory=dict)
    contexts: dict[str, dict[str, list[Step]]] = field(default_factory=dict)

    def steps(self) -> list[Step]:
        return [s for ctx in self.contexts.values() for ext in ctx.values() for s in ext]


_EXTEN = re.compile(r"^exten\s*=>\s*([^,]+),(\d+|n)(?:\((\w[\w-]*)\))?,(.*)$")
_SAME = re.compile(r"^same\s*=>\s*(\d+|n)(?:\((\w[\w-]*)\))?,(.*)$")
_APP = re.compile(r"^(\w+)\((.*)\)$")


def strip_comment(line: str) -> str:
    out, escaped = "", False
    for ch in line:
        if ch == ";" and not escaped:
            break
        escaped = ch == "\\"
        out += ch
    return out.strip()


def read_dialplan(path: Path = EXTENSIONS_CONF) -> Dialplan:
    plan = Dialplan()
    section = None
    exten = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = strip_comment(raw)
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            plan.sections.append(section)
            if section not in ("general", "globals"):
                plan.contexts[section] = {}
            continue
        if section == "globals":
            name, _, value = line.partition("=")
            plan.globals[name.strip()] = value.strip()
            continue
        if section in (None, "general"):
            continue
        if m := _EXTEN.match(line):
            exten, prio, label, body = m.group(1), m.group(2), m.group(3), m.group(4)
            priority = 1 if prio == "n" else int(prio)
        elif m := _SAME.match(line):
            assert exten is not None, f"line {number}: same => before any exten =>"
            prio, label, body = m.group(1), m.group(2), m.group(3)
            previous = plan.contexts[section][exten][-1].priority
            priority = previous + 1 if prio == "n" else int(prio)
        else:
            raise AssertionError(f"extensions.conf:{number}: not understood: {line}")
        app = _APP.match(body)
        assert app, f"extensions.conf:{number}: application not of the form App(args)"
        step = Step(exten, priority, label, app.group(1), app.group(2), number)
        plan.contexts[section].setdefault(exten, []).append(step)
    return plan


def pattern_matches(pattern: str, number: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == number
    regex = ""
    chars = iter(pattern[1:])
    for ch in chars:
        if ch == "X":
            regex += "[0-9]"
        elif ch == "Z":
            regex += "[1-9]"
        elif ch == "N":
            regex += "[2-9]"
        elif ch == ".":
            regex += ".+"
        elif ch == "!":
            regex += ".*"
        elif ch == "[":
            klass = ""
            for c in chars:
                if c == "]":
                    break
                klass += c
            regex += f"[{klass}]"
        else:
            regex += re.escape(ch)
    return re.fullmatch(regex, number) is not None


def find_exten(plan: Dialplan, context: str, number: str) -> str:
    extens = plan.contexts[context]
    if number in extens:
        return number
    for pattern in extens:
        if pattern_matches(pattern, number):
            return pattern
    raise LookupError(f"{number}@{context}: no such extension")


# --- a small interpreter: the path one call takes -------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Plain ${NAME} references (inner first); functions such as ${CALLERID(num)} stay."""
    while True:
        expanded = _VAR.sub(lambda m: variables.get(m.group(1), ""), text)
        if expanded == text:
            return text
        text = expanded


def evaluate(expression: str) -> bool:
    """The part of Asterisk's $[...] the dialplan uses: "strings", =, !=, &, |, (...)."""
    tokens = re.findall(r'"[^"]*"|!=|=|&|\||\(|\)|[^\s"=!&|()]+', expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def operand() -> str | bool:
        token = take()
        if token == "(":
            value = either()
            assert take() == ")"
            return value
        return token.strip('"')

    def comparison() -> bool:
        left = operand()
        if peek() in ("=", "!="):
            op, right = take(), operand()
            return (left == right) if op == "=" else (left != right)
        return left not in ("", "0", False)

    def both() -> bool:
        value = comparison()
        while peek() == "&":
            take()
            value = comparison() and value
        return value

    def either() -> bool:
        value = both()
        while peek() == "|":
            take()
            value = both() or value
        return value

    result = either()
    assert position == len(tokens), f"not understood: {expression}"
    return result


@dataclass
class Call:
    """What one channel did: the steps it ran and its variables at the end."""

    steps: list[Step]
    variables: dict[str, str]

    def apps(self) -> list[str]:
        return [s.app for s in self.steps]

    def first(self, app: str) -> Step:
        return next(s for s in self.steps if s.app == app)

    def index(self, app: str) -> int:
        return self.apps().index(app)

    def expanded(self, step: Step) -> str:
        return expand(step.args, self.variables)


def place_call(
    plan: Dialplan,
    context: str,
    number: str,
    agi_returns: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Call:
    """Walk a call from number@context. At AGI() the call stops, unless `agi_returns` gives
    the channel variables the FastAGI session left (AGISTATUS, IVRS_STARTED, ...)."""
    variables = {**plan.globals, **(overrides or {}), "UNIQUEID": UNIQUEID, "HANGUPCAUSE": "16"}
    exten = find_exten(plan, context, number)
    variables["EXTEN"] = number
    steps = plan.contexts[context][exten]
    index = 0
    ran: list[Step] = []

    def jump(target: str) -> None:
        nonlocal context, exten, steps, index
        parts = expand(target, variables).split(",")
        if len(parts) == 3:
            context, dialled, prio = parts
            exten = find_exten(plan, context, dialled)
            variables["EXTEN"] = dialled
            steps = plan.contexts[context][exten]
            label = None if prio.isdigit() else prio
            priority = int(prio) if prio.isdigit() else None
        else:
            (label,) = parts
            priority = None
        index = next(i for i, s in enumerate(steps) if s.label == label or s.priority == priority)

    for _ in range(200):
        if index >= len(steps):
            return Call(ran, variables)  # autofallthrough: the channel hangs up
        step = steps[index]
        ran.append(step)
        index += 1
        if step.app in ("Hangup", "Return"):
            return Call(ran, variables)
        if step.app == "Set":
            name, _, value = step.args.partition("=")
            variables[name] = expand(value, variables)
        elif step.app == "Goto":
            jump(step.args)
        elif step.app == "GotoIf":
            condition, _, targets = step.args.partition("?")
            assert condition.startswith("$[") and condition.endswith("]"), step
            then, _, otherwise = targets.partition(":")
            target = then if evaluate(expand(condition[2:-1], variables)) else otherwise
            if target:
                jump(target)
        elif step.app == "AGI":
            if agi_returns is None or agi_returns.get("AGISTATUS") == "HANGUP":
                return Call(ran, variables)  # a hang-up during AGI() ends the dialplan
            variables.update(agi_returns)
    raise AssertionError(f"{number}@{context}: more than 200 steps, a loop?")


@pytest.fixture(scope="module")
def plan() -> Dialplan:
    return read_dialplan()


# --- asterisklint -----------------------------------------------------------------------

# asterisklint's findings on our dialplan that are accepted: none. A new one fails the test;
# if one ever has to be accepted, add its exact "file:line CODE: text" here with the reason.
ALLOWED_LINT_FINDINGS: set[str] = set()


def asterisklint(conf: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("asterisklint")
    if not executable.exists():
        found = shutil.which("asterisklint")
        if found is None:
            pytest.fail(
                f"asterisklint is not installed next to {sys.executable}: "
                "install the dev extras (.venv/bin/pip install -e '.[dev]')"
            )
        executable = Path(found)
    env = {k: v for k, v in os.environ.items() if k != "ALINT_IGNORE"}  # suppress nothing
    return subprocess.run(
        [str(executable), "dialplan-check", conf.name],
        cwd=conf.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dialplan_passes_asterisklint_without_errors_or_warnings() -> None:
    result = asterisklint(EXTENSIONS_CONF)
    findings = {line for line in (result.stdout + result.stderr).splitlines() if line.strip()}
    assert findings == ALLOWED_LINT_FINDINGS, "\n".join(sorted(findings))
    assert result.returncode == 0


def test_asterisklint_flags_a_broken_copy_of_the_dialplan(tmp_path: Path) -> None:
    # Proves the lint test above can fail: a missing application is an error.
    text = EXTENSIONS_CONF.read_text(encoding="utf-8")
    broken = text.replace(" same => n,Set(AGISIGHUP=yes)", " same => n,AGISighup(yes)", 1)
    assert broken != text
    (tmp_path / "extensions.conf").write_text(broken, encoding="utf-8")
    result = asterisklint(tmp_path / "extensions.conf")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert re.search(r"^extensions\.conf:\d+ E_APP_MISSING: ", output, re.M), output


# --- the structure Asterisk reads -------------------------------------------------------


def test_general_comes_first_then_globals(plan: Dialplan) -> None:
    assert plan.sections[:2] == ["general", "globals"]


def test_every_line_is_understood_by_the_reader(plan: Dialplan) -> None:
    # read_dialplan raises on a line it cannot read; the contexts the docs name exist.
    assert {"ivrs-inbound", "ivrs", "ivrs-hangup", "ivrs-test", "ivrs-test-caller"} <= set(
        plan.contexts
    )


# --- a call to each hotline -------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "hotline"),
    [
        ("39023333", "39023333"),
        ("31532265", "31532265"),
        ("+85239023333", "39023333"),
        ("+85231532265", "31532265"),
    ],
)
def test_hotline_reaches_fastagi_after_language_timeout_and_recording(
    plan: Dialplan, dialled: str, hotline: str
) -> None:
    call = place_call(plan, "ivrs-inbound", dialled)

    agi = call.steps[-1]
    assert agi.app == "AGI"
    assert re.fullmatch(r"agi://\$\{IVRS_AGI_HOST\}:\$\{IVRS_AGI_PORT\}/ivrs,\$\{EXTEN\}", agi.args)
    assert call.expanded(agi).split(",") == ["agi://127.0.0.1:4573/ivrs", hotline]

    assert call.variables["CHANNEL(language)"] == "zh_HK"
    assert call.variables["TIMEOUT(absolute)"] == "900"
    assert call.variables["AGISIGHUP"] == "yes"
    assert "AGIEXITONHANGUP" not in call.variables  # the server closes the socket itself
    assert "Answer" not in call.apps()  # the FastAGI server answers

    # The hang-up handler is pushed before anything that could fail, MixMonitor before AGI.
    assert call.variables["CHANNEL(hangup_handler_push)"] == "ivrs-hangup,s,1"
    pushed = next(
        i for i, s in enumerate(call.steps) if s.args.startswith("CHANNEL(hangup_handler_push)")
    )
    assert pushed < call.index("MixMonitor") < call.index("AGI")


@pytest.mark.parametrize("hotline", HOTLINES)
def test_recording_has_no_b_option_and_lands_where_the_backend_serves_it(
    plan: Dialplan, hotline: str
) -> None:
    call = place_call(plan, "ivrs-inbound", hotline)
    mixmonitor = call.first("MixMonitor")
    filename, *options = mixmonitor.argv()
    assert filename == "${IVRS_RECORDINGS}/${UNIQUEID}.wav"
    # `b` records only while bridged: an IVR call is never bridged (tests/transcripts 05).
    assert all("b" not in option for option in options)
    assert call.expanded(mixmonitor) == f"/var/spool/asterisk/monitor/{UNIQUEID}.wav"


def test_hagi_switch_uses_dns_srv_failover(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs-inbound", "39023333", overrides={"IVRS_AGI_SRV": "agi.example"})
    assert call.steps[-1].app == "AGI"
    assert call.expanded(call.steps[-1]) == "hagi://agi.example/ivrs,39023333"
    assert plan.globals["IVRS_AGI_SRV"] == ""  # off unless the site sets it


def test_unknown_did_is_refused_without_ivr_or_recording(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs-inbound", "21234567")
    assert call.apps()[-1] == "Hangup"
    assert call.steps[-1].args == "1"  # unallocated number
    assert "AGI" not in call.apps() and "MixMonitor" not in call.apps()


# --- after AGI(): fallback, helpdesk, end ----------------------------------------------

UNAVAILABLE = ["ivrs/error/service_unavailable", "ivrs/call/goodbye"]


@pytest.mark.parametrize(
    ("agistatus", "started", "fallback"),
    [
        ("FAILURE", None, True),  # connection refused: the server never ran
        ("FAILURE", "1", False),  # a missing prompt during a call that ran
        ("SUCCESS", "1", False),  # a normal call: the server said goodbye
        ("SUCCESS", None, True),  # reached but closed before its first command (08 earlyclose)
    ],
)
def test_spoken_fallback_plays_only_when_the_server_never_started_the_call(
    plan: Dialplan, agistatus: str, started: str | None, fallback: bool
) -> None:
    returns = {"AGISTATUS": agistatus} | ({"IVRS_STARTED": started} if started else {})
    call = place_call(plan, "ivrs-inbound", "39023333", agi_returns=returns)
    played = [s.args for s in call.steps if s.app == "Playback"]
    assert played == (UNAVAILABLE if fallback else [])
    assert call.apps()[-1] == "Hangup"
    assert "Dial" not in call.apps()


def test_hangup_during_agi_ends_the_dialplan(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs-inbound", "39023333", agi_returns={"AGISTATUS": "HANGUP"})
    assert call.apps()[-1] == "AGI"


def test_helpdesk_transfer_dials_3669_0000_over_the_helpdesk_endpoint(plan: Dialplan) -> None:
    returns = {"AGISTATUS": "SUCCESS", "IVRS_STARTED": "1", "IVRS_TRANSFER": "helpdesk"}
    call = place_call(plan, "ivrs-inbound", "31532265", agi_returns=returns)
    dial = call.first("Dial")
    assert call.expanded(dial).split(",")[0] == "PJSIP/36690000@helpdesk"
    # One name for the dialplan and the FastAGI server (ivr/flow.py asks for it).
    assert dial.args.startswith("${IVRS_HELPDESK_DIAL},")
    flow = (DIALPLAN_DIR.parent / "ivr" / "flow.py").read_text(encoding="utf-8")
    assert HELPDESK_VARIABLE == "IVRS_HELPDESK_DIAL"
    assert "get_var(HELPDESK_VARIABLE)" in flow
    assert call.variables["TIMEOUT(absolute)"] == plan.globals["IVRS_HELPDESK_LIMIT"]
    assert "Playback" not in call.apps()[: call.index("Dial")]
    pjsip = (DIALPLAN_DIR / "pjsip.conf").read_text(encoding="utf-8")
    assert re.search(r"^\[helpdesk\]\ntype=endpoint$", pjsip, re.M)


def test_call_limit_says_goodbye(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs", "T")
    assert [s.args for s in call.steps if s.app == "Playback"] == ["ivrs/call/goodbye"]


# --- the hang-up handler ----------------------------------------------------------------


def test_hangup_handler_posts_uniqueid_and_cause_to_the_backend(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs-hangup", "s")
    assert call.apps()[-1] == "Return"

    curl = next(s for s in call.steps if "${CURL(" in s.args)
    inner = re.fullmatch(
        r"IVRS_HANGUP_REPLY_LEN=\$\{LEN\(\$\{SET\(IVRS_HANGUP_REPLY=\$\{CURL\((.*)\)\}\)\}\)\}",
        curl.args,
    )
    assert inner, curl.args
    url, body = expand(inner.group(1), call.variables).split(",", 1)  # post data: the rest
    assert url == "http://127.0.0.1:8080/v1/calls/hangup"
    assert json.loads(body) == {"uniqueid": UNIQUEID, "cause": "16"}

    # Headers and time limits are set once, before the request (httpheader adds up).
    assert [s.args for s in call.steps].count(
        "CURLOPT(httpheader)=Content-Type: application/json"
    ) == 1
    token = next(s for s in call.steps if "Authorization: Bearer ${ENV(IVRS_API_TOKEN)}" in s.args)
    assert call.steps.index(token) < call.steps.index(curl)
    # No reply body: a call log can outgrow Asterisk's 4,096-byte expansion buffer.
    minimal = [s.args for s in call.steps].index("CURLOPT(httpheader)=Prefer: return=minimal")
    assert minimal < call.steps.index(curl)
    assert float(call.variables["CURLOPT(conntimeout)"]) <= 5
    assert float(call.variables["CURLOPT(httptimeout)"]) <= 5


def test_api_token_is_never_an_application_argument(plan: Dialplan) -> None:
    # Asterisk logs each application's expanded arguments at verbose 3: the token may only
    # be used inside a function whose result is not the token (here LEN of SET).
    def without_len_calls(args: str) -> str:
        out, i = "", 0
        while i < len(args):
            if args.startswith("${LEN(", i):
                depth = 1
                for j in range(i + 2, len(args)):
                    depth += args[j] == "{"
                    depth -= args[j] == "}"
                    if depth == 0:
                        break
                i = j + 1
            else:
                out += args[i]
                i += 1
        return out

    uses = [s for s in plan.steps() if "IVRS_API_TOKEN" in s.args]
    assert uses, "the hang-up handler must authenticate"
    # Never a global either: Asterisk logs each global it sets, value included.
    assert "IVRS_API_TOKEN" not in plan.globals
    for step in uses:
        assert "IVRS_API_TOKEN" not in without_len_calls(step.args), step


# --- no secrets in the files ------------------------------------------------------------

SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|KEY)(_|$)")


def test_no_secret_is_hard_coded_in_the_dialplan(plan: Dialplan) -> None:
    for name, value in plan.globals.items():
        if SECRET_NAME.search(name):
            assert re.fullmatch(r"\$\{ENV\(\w+\)\}", value), f"{name} holds a literal value"
    text = EXTENSIONS_CONF.read_text(encoding="utf-8")
    assert "ivrs-dev-token" not in text
    assert not re.search(r"Bearer\s+(?!\$\{)", text), "a literal bearer token"
    for step in plan.steps():
        assert not re.search(r"(?<![\w{])[A-Za-z0-9+/_-]{32,}", step.args), step


def test_no_secret_is_hard_coded_in_the_samples() -> None:
    manager = (DIALPLAN_DIR / "manager.conf").read_text(encoding="utf-8")
    assert not re.search(r"^\s*secret\s*=", manager, re.M)
    assert re.search(r'^#include "manager_ivrs_secret\.conf"$', manager, re.M)
    pjsip = (DIALPLAN_DIR / "pjsip.conf").read_text(encoding="utf-8")
    assert not re.search(r"^\s*password\s*=", pjsip, re.M)


def test_ami_is_private_and_least_privilege() -> None:
    manager = (DIALPLAN_DIR / "manager.conf").read_text(encoding="utf-8")
    settings: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in manager.splitlines():
        line = strip_comment(raw)
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    assert settings["general"]["bindaddr"][0].startswith("10.")
    assert settings["general"]["webenabled"] == ["no"]
    user = settings["ivrs"]
    assert user["deny"] == ["0.0.0.0/0.0.0.0"]
    assert set(user["read"][0].split(",")) == {"call"}
    assert set(user["write"][0].split(",")) == {"call", "reporting", "originate"}


# --- the smoke-test contexts ------------------------------------------------------------


@pytest.mark.parametrize("hotline", HOTLINES)
def test_local_channel_test_extension_reaches_the_ivr(plan: Dialplan, hotline: str) -> None:
    call = place_call(plan, "ivrs-test", hotline)
    assert call.expanded(call.steps[-1]) == f"agi://127.0.0.1:4573/ivrs,{hotline}"


def test_unreachable_test_extension_exercises_the_fallback(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs-test", "unreachable", agi_returns={"AGISTATUS": "FAILURE"})
    agi = call.first("AGI")
    assert call.expanded(agi) == "agi://127.0.0.1:9/ivrs,39023333"
    assert [s.args for s in call.steps if s.app == "Playback"] == UNAVAILABLE


def test_test_caller_keys_a_script_given_by_originate(plan: Dialplan) -> None:
    call = place_call(plan, "ivrs-test-caller", "keys", overrides={"IVRS_TEST_KEYS": "W3W123#"})
    senddtmf = call.first("SendDTMF")
    assert call.expanded(senddtmf).split(",")[0] == "W3W123#"
    assert {"silence", "hangup", "keys"} <= set(plan.contexts["ivrs-test-caller"])


def test_test_call_and_the_simulated_ami_know_the_test_callers_of_the_dialplan(
    plan: Dialplan,
) -> None:
    """`ivrs asterisk test-call` originates into [ivrs-test] with a caller of
    [ivrs-test-caller]; the simulated AMI plays those callers: all three agree."""
    from cli.asterisk import CALLERS, TEST_CALLER_CONTEXT, TEST_IVR_CONTEXT
    from simulator import ami_server

    assert (TEST_IVR_CONTEXT, TEST_CALLER_CONTEXT) == (
        ami_server.TEST_IVR_CONTEXT,
        ami_server.TEST_CALLER_CONTEXT,
    )
    assert set(CALLERS) == set(plan.contexts[TEST_CALLER_CONTEXT])
    assert all(ami_server._caller_keys(caller, {}) is not None for caller in CALLERS)
    senddtmf = place_call(plan, TEST_CALLER_CONTEXT, "keys", overrides={"IVRS_TEST_KEYS": "W3"})
    assert senddtmf.first("SendDTMF").args.startswith("${IVRS_TEST_KEYS}")
    ivr = place_call(plan, TEST_IVR_CONTEXT, "39023333")
    agi = ivr.first("AGI")
    assert int(ami_server.AGI_PRIORITY) == agi.priority  # the simulated header's agi_priority


def test_the_classic_agi_alternative_is_documented_next_to_agi() -> None:
    text = EXTENSIONS_CONF.read_text(encoding="utf-8")
    assert "AGI(/usr/local/bin/ivrs-agi,${EXTEN})" in text
    scripts = (DIALPLAN_DIR.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert 'ivrs-agi = "agi_scripts.ivrs_agi:main"' in scripts
