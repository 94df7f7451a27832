"""The simulator (simulator) against the exact lines a real Asterisk 22 sent.

A small FastAGI peer written here (plain asyncio.start_server, not the project's server) reads
the header, sends scripted commands and logs every raw line the simulator sends back. Every
scenario of tests/transcripts/fixtures.json and fixtures-2.json is replayed with a key
script that makes the caller do what the captured caller did, and the lines must match.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from prompts.catalog import Catalog
from simulator import (
    CallRecord,
    Command,
    Heard,
    KeyScriptError,
    KeyToken,
    SimulatedAsterisk,
    ask_stdin,
    format_heard,
    parse_args,
    parse_keys,
    place_call,
)
from tests.transcripts import load

FIXTURES = {f"1:{k}": v for k, v in load("fixtures.json").items()} | {
    f"2:{k}": v for k, v in load("fixtures-2.json").items()
}

NOT_PERMITTED = "511 Command Not Permitted on a dead channel or intercept routine"
QUIET_S = 0.1  # longer than the 40 ms the HANGUP line may take

CATALOG = Catalog(
    {
        "login.account": {
            "en": "Please enter your IVRS account number, then press hash.",
            "zh_HK": "請輸入你嘅 IVRS 帳戶號碼，然後按井字鍵。",
        },
        "login.password": {"en": "Please enter your password, then press hash."},
        "bundle.ccrn_confirm": {
            "en": "You entered {digits}. Press 1 to confirm, or 2 to enter it again."
        },
        "test.slot_first": {"en": "{digits} is the number you entered."},
    }
)


# -- the test's FastAGI peer ------------------------------------------------------------------


class Peer:
    """The server's end of one connection, driven by a test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.header: list[str] = []
        self.log: list[tuple[str, str | None]] = []  # (">>", command) and ("<<", line)

    async def read_line(self) -> str | None:
        """The next line from the simulator; None at EOF."""
        raw = await asyncio.wait_for(self.reader.readline(), 2)
        line = raw.decode().removesuffix("\n") if raw else None
        self.log.append(("<<", line))
        return line

    async def read_header(self) -> None:
        while line := await self.read_line():
            self.header.append(line)
        self.log.clear()

    def send(self, command: str) -> None:
        self.log.append((">>", command))
        self.writer.write(command.encode() + b"\n")

    async def command(self, command: str) -> list[str | None]:
        """Send a command; its reply lines (with HANGUP lines before it, or a 520 block)."""
        self.send(command)
        lines = [await self.read_line()]
        while lines[-1] == "HANGUP":
            lines.append(await self.read_line())
        if (lines[-1] or "").startswith("520-"):
            while not (lines[-1] or "520 ").startswith("520 "):
                lines.append(await self.read_line())
        return lines

    async def ending(self) -> str:
        """`open` when nothing more comes (Asterisk keeps the socket), `eof` when it closed."""
        try:
            raw = await asyncio.wait_for(self.reader.readline(), QUIET_S)
        except TimeoutError:
            return "open"
        return f"extra line {raw!r}" if raw else "eof"


Script = Callable[[Peer], Awaitable[None]]


async def call(
    talk: Script, /, *, request: tuple[str, int] | None = None, **options: Any
) -> tuple[CallRecord, Peer]:
    """One call from a SimulatedAsterisk(**options) to a peer running `talk`."""
    peers: list[Peer] = []
    errors: list[BaseException] = []
    finished = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        peers.append(peer)
        try:
            await peer.read_header()
            await talk(peer)
        except Exception as error:  # re-raised in the test, not lost in the server's task
            errors.append(error)
        finally:
            writer.close()
            finished.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        host, request_port = request or ("127.0.0.1", port)
        asterisk = SimulatedAsterisk(**{"catalog": CATALOG, **options})
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        record = await asyncio.wait_for(
            asterisk.run(reader, writer, host=host, port=request_port), 10
        )
        await asyncio.wait_for(finished.wait(), 5)
    if errors:
        raise errors[0]
    return record, peers[0]


def commands(*lines: str) -> Script:
    """A peer that sends `lines` one by one, reading each reply, then closes."""

    async def script(peer: Peer) -> None:
        for line in lines:
            await peer.command(line)

    return script


def replies(peer: Peer) -> list[str | None]:
    return [line for direction, line in peer.log if direction == "<<"]


# -- every captured scenario, replayed --------------------------------------------------------

LOOSE_ENDPOS = "loose_endpos"


def during_first_command(command: Command) -> bool:
    return command.index == 0


# The caller's behaviour in each scenario, as simulator options (mostly a key script).
REPLAYS: dict[str, dict[str, Any]] = {
    "1:agi_hangup": {},
    "1:env": {},
    "1:errors": {"usage_lines": False},  # that build had no XML documentation
    "1:gap_fast": {"keys": "^12345#"},
    "1:gap_slow": {"keys": "^1 ."},  # keys lost while the server paused: "." stands for them
    "1:getdata_hash": {"keys": "^12345#"},
    "1:getdata_hashonly": {"keys": "^#"},
    "1:getdata_max": {"keys": "^123456"},
    "1:getdata_partial": {"keys": "^12"},
    "1:getdata_star": {"keys": "^*1#"},
    "1:getdata_timeout": {"keys": "."},
    "1:hangup_between": {"keys": "~"},
    "1:hangup_getdata": {"keys": "^!"},
    "1:hangup_linger": {"keys": "^!"},
    "1:hangup_stream": {"keys": "^!", LOOSE_ENDPOS: True},  # hung up at 1.02 s, not 1.00 s
    "1:mute": {},
    "1:say": {},
    "1:say_bargein": {"keys": "^#"},
    "1:say_yue": {},
    "1:stream_bargein": {"keys": "^5"},
    "1:stream_nodigit": {},
    "1:vars": {},
    "1:waitdigit": {"keys": "7 ."},
    "2:bargein": {"keys": "^5 ^9"},  # 9 is not an escape key of the second STREAM FILE
    "2:earlyclose": {},
    "2:env": {},
    "2:envplain": {},
    "2:errors": {},
    "2:exec": {},
    "2:gdapp": {"keys": "123# ~"},
    "2:gdhash": {"keys": "^12345#"},
    "2:gdhashonly": {"keys": "^#"},
    "2:gdmax": {"keys": "^123456"},
    "2:gdpartial": {"keys": "^12"},
    "2:gdstar": {"keys": "^*1#"},
    "2:gdtimeout": {"keys": "."},
    "2:halfclose": {},
    "2:hupagicmd": {},
    "2:hupbetween": {"hangup_at": during_first_command},  # right after ANSWER's reply
    "2:hupexec": {"keys": "^!"},
    "2:hupexit": {"keys": "^!", "exit_on_hangup": True},
    "2:hupgetdata": {"keys": "^!"},
    "2:huplinger": {"keys": "^!"},
    "2:hupnosighup": {"keys": "^!", "sighup": False},
    "2:hupstream": {"keys": "^!"},
    "2:rec": {},
    "2:say": {},
    "2:saybargein": {"keys": "^#"},
    "2:stream": {},
    "2:typeahead": {"keys": "."},  # keys lost while the server paused: "." stands for them
    "2:vars": {},
    "2:waitdigit": {"keys": "7"},
}
NOT_REPLAYED = {
    "2:pipestream": "a command sent while STREAM FILE plays; the simulator answers one at a time",
    "2:pipegetdata": "a command sent while GET DATA waits; the simulator answers one at a time",
}


def header_options(header: list[str]) -> dict[str, Any]:
    """Simulator options that reproduce a captured header."""
    fields = dict(line.split(": ", 1) for line in header)
    known = fields["agi_callerid"] != "unknown"
    return {
        "script": fields.get("agi_network_script", ""),
        "args": [fields[f"agi_arg_{n}"] for n in range(1, 20) if f"agi_arg_{n}" in fields],
        "uniqueid": fields["agi_uniqueid"],
        "channel": fields["agi_channel"],
        "caller_id": fields["agi_callerid"] if known else None,
        "caller_name": fields["agi_calleridname"] if known else None,
        "dnid": fields["agi_dnid"],
        "context": fields["agi_context"],
        "extension": fields["agi_extension"],
        "priority": int(fields["agi_priority"]),
        "language": fields["agi_language"],
    }


def expected_log(scenario: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The captured conversation: commands, replies, and unsolicited lines where they came."""
    log: list[tuple[str, str | None]] = []
    unsolicited = sorted(scenario.get("unsolicited", []), key=lambda u: u["at"])
    for exchange in scenario["exchanges"]:
        while unsolicited and unsolicited[0]["at"] <= exchange["at"]:
            log.append(("<<", unsolicited.pop(0)["line"]))
        log.append((">>", exchange["command"]))
        log += [("<<", line["line"]) for line in exchange["lines"]]
    log += [("<<", u["line"]) for u in unsolicited]
    closed_by = scenario.get("closed", {"by": "server"})["by"]
    return [*log, ("end", "eof" if closed_by == "asterisk" else "open")]


def replay(scenario: dict[str, Any]) -> Script:
    """A peer that does what the capturing server did, reading as many lines as came."""

    async def script(peer: Peer) -> None:
        if "closes right after the header" in scenario["caller"]:
            return
        unsolicited = sorted(scenario.get("unsolicited", []), key=lambda u: u["at"])
        for exchange in scenario["exchanges"]:
            while unsolicited and unsolicited[0]["at"] <= exchange["at"]:
                unsolicited.pop(0)
                await peer.read_line()
            peer.send(exchange["command"])
            for _ in exchange["lines"]:
                await peer.read_line()
        if "half-closes" in scenario["caller"]:
            peer.writer.write_eof()
        for _ in unsolicited:
            await peer.read_line()
        peer.log.append(("end", await peer.ending()))

    return script


def without_threadid(header: list[str]) -> list[str]:
    assert [line for line in header if re.fullmatch(r"agi_threadid: \d+", line)]
    return [line for line in header if not line.startswith("agi_threadid: ")]


def loosen(log: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    return [(d, re.sub(r"endpos=\d+", "endpos=N", line or "")) for d, line in log]


def test_every_captured_scenario_is_replayed_or_explained() -> None:
    assert set(REPLAYS) | set(NOT_REPLAYED) == set(FIXTURES)


@pytest.mark.parametrize("name", sorted(REPLAYS))
async def test_simulator_sends_the_captured_lines(name: str) -> None:
    scenario = FIXTURES[name]
    options = {**header_options(scenario["header"]), **REPLAYS[name]}
    options["answered"] = name.startswith("1:")  # that dialplan answered before AGI() (08)
    loose = options.pop(LOOSE_ENDPOS, False)
    record, peer = await call(replay(scenario), request=("127.0.0.1", 4573), **options)

    assert without_threadid(peer.header) == without_threadid(scenario["header"])
    expected = [] if not scenario["exchanges"] and "closed" in scenario else expected_log(scenario)
    if loose:
        assert loosen(peer.log) == loosen(expected)
    else:
        assert peer.log == expected
    assert [e.command for e in record.exchanges] == [e["command"] for e in scenario["exchanges"]]


# -- header -----------------------------------------------------------------------------------


async def test_place_call_sends_a_hotline_header_with_its_own_address() -> None:
    headers: list[list[str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        await peer.read_header()
        headers.append(peer.header)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        record = await place_call("127.0.0.1", port, caller_id="85291234567")
    fields = dict(line.split(": ", 1) for line in headers[0])
    assert fields["agi_request"] == f"agi://127.0.0.1:{port}/ivrs"
    assert re.fullmatch(r"PJSIP/hotline-[0-9a-f]{8}", fields["agi_channel"])
    assert fields["agi_type"] == "PJSIP"
    assert re.fullmatch(r"\d{10}\.\d+", fields["agi_uniqueid"])
    assert fields["agi_uniqueid"] == record.uniqueid
    assert (fields["agi_callerid"], fields["agi_calleridname"]) == ("85291234567", "unknown")
    assert fields["agi_callingpres"] == "0"
    assert fields["agi_arg_1"] == "39023333"
    assert headers[0][-1] == "agi_arg_1: 39023333"
    assert record.exchanges == [] and record.closed_by == "server"


def test_header_without_a_script_has_no_network_script_line() -> None:
    header = SimulatedAsterisk(script="", args=()).header("10.0.0.1", 4573)
    assert header[:2] == ["agi_network: yes", "agi_request: agi://10.0.0.1:4573"]
    assert not [line for line in header if line.startswith("agi_arg_")]


# -- command lines ----------------------------------------------------------------------------


def test_command_lines_split_as_asterisk_splits_them() -> None:
    assert parse_args('SET VARIABLE FOO "bar baz"') == ["SET", "VARIABLE", "FOO", "bar baz"]
    assert parse_args('STREAM FILE vm-goodbye ""') == ["STREAM", "FILE", "vm-goodbye", ""]
    assert parse_args(r'VERBOSE "say \"hi\"" 1') == ["VERBOSE", 'say "hi"', "1"]
    assert parse_args("ANSWER\r") == ["ANSWER\r"]


async def test_a_carriage_return_makes_the_command_unknown_as_in_asterisk() -> None:
    _, peer = await call(commands("ANSWER\r", "answer"))
    assert replies(peer) == ["510 Invalid or unknown command", "200 result=0"]


async def test_wrong_usage_of_uncaptured_commands_still_answers_a_complete_520() -> None:
    _, peer = await call(commands("SET VARIABLE X", "EXEC", "SAY NUMBER x 1", "ANSWER"))
    lines = replies(peer)
    assert lines.count("520-Invalid command syntax.  Proper usage follows:") == 3
    assert lines.count("520 End of proper usage.") == 3
    assert lines[-1] == "200 result=0"


# -- STREAM FILE, GET DATA, WAIT FOR DIGIT, SAY ------------------------------------------------


async def test_plain_keys_never_interrupt_a_prompt_and_wait_for_a_reading_command() -> None:
    _, peer = await call(
        commands('STREAM FILE vm-goodbye "0123456789*#"', "WAIT FOR DIGIT 8000"), keys="5"
    )
    assert replies(peer) == ["200 result=0 endpos=6920", "200 result=53"]


async def test_a_reading_command_leaves_a_barge_in_token_for_the_next_prompt() -> None:
    _, peer = await call(
        commands("WAIT FOR DIGIT 100", 'STREAM FILE vm-intro "0123456789*#"'), keys="^5"
    )
    assert replies(peer) == ["200 result=0", "200 result=53 endpos=9760"]


async def test_a_missing_stream_file_answers_its_offset_and_fails_the_agi() -> None:
    record, peer = await call(commands('STREAM FILE no-such-file "" 4000', "ANSWER"))
    assert replies(peer) == ["200 result=-1 endpos=4000", "200 result=0"]
    assert record.agi_status == "FAILURE" and not record.hung_up
    assert record.heard[0] == Heard("missing", "no-such-file", "")


async def test_get_data_of_a_missing_prompt_answers_minus_one_and_the_call_stays_up() -> None:
    record, peer = await call(commands("GET DATA ivrs/no/such 3000 4", "CHANNEL STATUS"))
    assert replies(peer) == ["200 result=-1", "200 result=4"]  # no HANGUP line, no 511
    assert record.agi_status == "SUCCESS" and not record.hung_up


async def test_say_commands_tell_what_the_caller_hears() -> None:
    heard: list[Heard] = []
    await call(
        commands(
            'SAY DIGITS 123 ""',
            'SAY ALPHA ab1 ""',
            'SAY NUMBER 42 ""',
            'SAY DATETIME 1700000000 "" "HM" "Asia/Hong_Kong"',
            'SAY DATETIME 1700040000 "" "IMp" "Asia/Hong_Kong"',
            'SAY TIME 1700000000 ""',
        ),
        on_heard=heard.append,
    )
    assert [(h.kind, h.text) for h in heard] == [
        ("digits", "1 2 3"),
        ("alpha", "A B 1"),
        ("number", "42"),
        ("datetime", "06:13"),
        ("datetime", "5:20 PM"),
        ("datetime", "6:13 AM"),
    ]


# -- the key grammar --------------------------------------------------------------------------


def test_parse_keys_reads_every_token_form() -> None:
    tokens = parse_keys("12345678#  ^5 . ! 12! ^! ~ {totp}# ^*1#")
    assert tokens == [
        KeyToken("12345678#", "12345678#"),
        KeyToken("^5", "5", barge_in=True),
        KeyToken("."),
        KeyToken("!", hangup=True),
        KeyToken("12!", "12", hangup=True),
        KeyToken("^!", barge_in=True, hangup=True),
        KeyToken("~", between=True),
        KeyToken("{totp}#", "{totp}#"),
        KeyToken("^*1#", "*1#", barge_in=True),
    ]
    assert parse_keys("") == []


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("12a4", "bad character 'a' at position 3"),
        ("1^2", "'^' at position 2 must start the token"),
        ("!1", "'!' at position 1 must end the token"),
        ("1.", "'.' must stand alone"),
        ("~1", "'~' must stand alone"),
        ("^", "'^' needs keys or '!' after it"),
        ("{otp}#", "unknown placeholder at position 1"),
    ],
)
def test_parse_keys_names_what_is_wrong(script: str, message: str) -> None:
    with pytest.raises(KeyScriptError, match=re.escape(message)):
        parse_keys(script)


def test_a_totp_token_needs_a_code_source() -> None:
    with pytest.raises(KeyScriptError, match="totp"):
        SimulatedAsterisk(keys="{totp}#")


async def test_totp_code_is_taken_when_its_token_is_first_used() -> None:
    issued: list[str] = []

    def totp() -> str:
        issued.append(f"{len(issued) + 1:06d}")
        return issued[-1]

    async def script(peer: Peer) -> None:
        await peer.command("ANSWER")
        assert issued == []  # not at dialling time
        await peer.command("GET DATA silence/1 5000 8")
        await peer.command("GET DATA silence/1 5000 8")

    _, peer = await call(script, keys="{totp}# {totp}#", totp=totp)
    assert replies(peer) == ["200 result=0", "200 result=000001", "200 result=000002"]


async def test_one_token_feeds_reading_commands_one_after_another() -> None:
    _, peer = await call(
        commands("WAIT FOR DIGIT 8000", "GET DATA silence/1 5000 12"), keys="12345678#"
    )
    assert replies(peer) == ["200 result=49", "200 result=2345678"]


async def test_keys_left_after_max_digits_go_to_the_next_reading_command() -> None:
    _, peer = await call(commands(*["GET DATA beep 3000 4"] * 3), keys="123456 78#")
    assert replies(peer) == ["200 result=1234", "200 result=56 (timeout)", "200 result=78"]


async def test_a_dot_times_out_the_next_reading_command() -> None:
    _, peer = await call(
        commands(*["WAIT FOR DIGIT 1000"] * 2, "GET DATA beep 2000 4"), keys=". 5 ."
    )
    assert replies(peer) == ["200 result=0", "200 result=53", "200 result= (timeout)"]


async def test_a_bang_after_keys_hangs_up_once_they_are_typed() -> None:
    record, peer = await call(
        commands("WAIT FOR DIGIT 5000", "GET DATA beep 5000 6", "ANSWER"), keys="12!"
    )
    assert replies(peer) == ["200 result=49", "200 result=-1", "HANGUP", NOT_PERMITTED]
    assert record.hung_up and record.agi_status == "HANGUP"
    assert format_heard(record.heard[-1]) == "(caller hung up)"


async def test_a_barge_in_key_outside_the_escape_keys_is_ignored_and_used_up() -> None:
    _, peer = await call(
        commands('SAY DIGITS 12 ""', "WAIT FOR DIGIT 100", 'SAY DIGITS 12 "#"'), keys="^5 ^#"
    )
    assert replies(peer) == ["200 result=0", "200 result=0", "200 result=35"]


async def test_a_silent_caller_hangs_up_after_fifty_commands() -> None:
    _, peer = await call(commands(*["WAIT FOR DIGIT 1000"] * 51))
    assert replies(peer) == ["200 result=0"] * 49 + ["200 result=-1", "HANGUP", NOT_PERMITTED]


async def test_a_tilde_hangs_up_right_after_the_previous_reply() -> None:
    async def script(peer: Peer) -> None:
        await peer.command("WAIT FOR DIGIT 1000")
        await peer.read_line()  # unsolicited, while the server sends nothing
        await peer.command("ANSWER")

    record, peer = await call(script, keys="5 ~")
    assert replies(peer) == ["200 result=53", "HANGUP", NOT_PERMITTED]
    assert record.hung_up and record.trailing == ["HANGUP"]  # the last, when the server closed


# -- hang-ups ---------------------------------------------------------------------------------


async def test_hangup_at_hangs_up_during_the_chosen_prompt() -> None:
    seen: list[Command] = []

    def hangs_up(command: Command) -> bool:
        seen.append(command)
        return command.prompt_id == "login.password"

    record, peer = await call(
        commands(
            'STREAM FILE ivrs/login/account "0123456789*#"',
            'STREAM FILE ivrs/login/password "0123456789*#"',
            'STREAM FILE vm-goodbye ""',
            'VERBOSE "bye" 1',
        ),
        hangup_at=hangs_up,
    )
    assert replies(peer)[1:] == [
        "200 result=-1 endpos=8000",
        "HANGUP",
        NOT_PERMITTED,
        "200 result=1",
    ]
    assert seen[1] == Command(
        1, "STREAM FILE", ["ivrs/login/password", "0123456789*#"], "login.password",
        'STREAM FILE ivrs/login/password "0123456789*#"',
    )  # fmt: skip
    assert len(seen) == 2  # never asked again once the caller is gone
    assert record.exchanges[2].reply == ["HANGUP", NOT_PERMITTED]


async def test_the_simulator_keeps_the_socket_open_after_a_hangup() -> None:
    async def script(peer: Peer) -> None:
        await peer.command("GET DATA vm-intro 10000 4")
        assert await peer.read_line() == "HANGUP"
        await asyncio.sleep(0.3)
        assert await peer.ending() == "open"

    record, _ = await call(script, keys="!")
    assert record.closed_by == "server" and record.hung_up


async def test_exit_on_hangup_sends_two_hangup_lines_and_closes() -> None:
    async def script(peer: Peer) -> None:
        await peer.command("WAIT FOR DIGIT 1000")
        await peer.read_line()
        await peer.read_line()
        peer.log.append(("end", await peer.ending()))

    record, peer = await call(script, keys="!", exit_on_hangup=True)
    assert peer.log[1:] == [
        ("<<", "200 result=-1"),
        ("<<", "HANGUP"),
        ("<<", "HANGUP"),
        ("end", "eof"),
    ]
    assert record.closed_by == "asterisk" and record.trailing == ["HANGUP", "HANGUP"]


async def test_exec_hangup_ends_the_call_from_the_server_side() -> None:
    record, peer = await call(commands("EXEC Hangup", "ANSWER"))
    assert replies(peer) == ["200 result=-1", "HANGUP", NOT_PERMITTED]
    assert not record.hung_up and record.agi_status == "HANGUP"


async def test_max_commands_hangs_up_on_a_server_that_never_ends() -> None:
    _, peer = await call(commands(*["WAIT FOR DIGIT 100"] * 4), keys="1 1 1 1", max_commands=2)
    assert replies(peer) == [
        "200 result=49",
        "200 result=49",
        "200 result=-1",
        "HANGUP",
        NOT_PERMITTED,
    ]


# -- variables and EXEC -----------------------------------------------------------------------


async def test_exec_expands_its_argument_only_with_agiexecfull() -> None:
    record, peer = await call(
        commands(
            'EXEC Set "A=${UNIQUEID}"',
            "SET VARIABLE AGIEXECFULL yes",
            'EXEC Set "B=${UNIQUEID}"',
            "GET VARIABLE A",
            "GET VARIABLE B",
        ),
        uniqueid="1795420955.1",
    )
    assert replies(peer)[-2:] == ["200 result=1 (${UNIQUEID})", "200 result=1 (1795420955.1)"]
    assert record.variables["A"] == "${UNIQUEID}"


async def test_the_record_keeps_variables_language_and_the_database() -> None:
    record, peer = await call(
        commands(
            'EXEC MixMonitor "recordings/${UNIQUEID}.wav,b"',
            "SET VARIABLE CHANNEL(language) zh_HK",
            "DATABASE PUT ivrs k v1",
            "DATABASE GET ivrs k",
            "DATABASE DEL ivrs k",
            "DATABASE GET ivrs k",
        )
    )
    assert replies(peer)[2:] == [
        "200 result=1",
        "200 result=1 (v1)",
        "200 result=1",
        "200 result=0",
    ]
    assert record.variables == {"MIXMONITOR_FILENAME": "recordings/${UNIQUEID}.wav"}
    assert record.language == "zh_HK"


# -- prompts: what the caller hears -----------------------------------------------------------


async def test_prompt_ids_are_recorded_once_per_prompt_at_its_first_part() -> None:
    record, peer = await call(
        commands(
            'STREAM FILE ivrs/bundle/ccrn_confirm ""',
            'SAY DIGITS 123456789012 ""',
            'STREAM FILE ivrs/bundle/ccrn_confirm-2 "12"',
            'SAY DIGITS 12 ""',
            'STREAM FILE ivrs/test/slot_first-2 ""',  # its text starts with a variable
            'STREAM FILE ivrs/bundle/ccrn_confirm ""',
            'STREAM FILE ivrs/login/nothing ""',  # missing: not played
        )
    )
    assert record.prompt_ids == ["bundle.ccrn_confirm", "test.slot_first", "bundle.ccrn_confirm"]
    assert replies(peer)[-1] == "200 result=-1 endpos=0"
    assert record.said[:3] == [
        "You entered",
        "1 2 3 4 5 6 7 8 9 0 1 2",
        ". Press 1 to confirm, or 2 to enter it again.",
    ]


async def test_prompts_are_heard_in_the_channel_language_with_english_fallback() -> None:
    record, _ = await call(
        commands(
            'STREAM FILE ivrs/login/account ""',
            "SET VARIABLE CHANNEL(language) zh_HK",
            'STREAM FILE ivrs/login/account ""',
            'STREAM FILE ivrs/login/password ""',  # no zh_HK text: English, like Asterisk
        ),
        language="en",
    )
    assert record.said == [
        "Please enter your IVRS account number, then press hash.",
        "請輸入你嘅 IVRS 帳戶號碼，然後按井字鍵。",
        "Please enter your password, then press hash.",
    ]


async def test_durations_ms_set_prompt_lengths_and_add_files() -> None:
    _, peer = await call(
        commands('STREAM FILE ivrs/login/account ""', 'STREAM FILE ivrs/extra/file ""'),
        durations_ms={"ivrs/login/account": 2000, "ivrs/extra/file": 500},
    )
    assert replies(peer) == ["200 result=0 endpos=16000", "200 result=0 endpos=4000"]


def test_format_heard_gives_one_line_per_event() -> None:
    text = "Please enter your IVRS account number, then press hash."
    assert format_heard(Heard("prompt", "ivrs/login/account", text)) == (
        f"[prompt] login.account: {text}"
    )
    assert format_heard(Heard("prompt", "ivrs/bundle/ccrn_confirm-2", ". Press 1", "1")) == (
        "[prompt] bundle.ccrn_confirm-2: . Press 1 (interrupted by 1)"
    )
    assert format_heard(Heard("digits", "1234567890", "1 2 3 4 5 6 7 8 9 0")) == (
        "[digits] 1 2 3 4 5 6 7 8 9 0"
    )
    assert format_heard(Heard("datetime", "1700000000", "14:35")) == "[datetime] 14:35"
    assert format_heard(Heard("keys", "5", "5")) == "(caller pressed 5)"
    assert format_heard(Heard("missing", "ivrs/x", "")) == "[missing] ivrs/x"


# -- the clock --------------------------------------------------------------------------------


async def test_the_virtual_clock_counts_answer_prompts_keys_and_timeouts_at_once() -> None:
    started = time.monotonic()
    record, _ = await call(
        commands(
            "ANSWER", 'STREAM FILE vm-goodbye ""', "WAIT FOR DIGIT 3000", "GET DATA beep 2000 4"
        ),
        keys="5 .",
    )
    assert [e.at_ms for e in record.exchanges] == [0, 500, 1365, 1615]
    assert record.duration_ms == 1615 + 428 + 2000  # beep, then the timeout
    assert time.monotonic() - started < 1


async def test_real_time_sleeps_through_prompts() -> None:
    started = time.monotonic()
    await call(commands('STREAM FILE vm-goodbye ""'), real_time=True, speed=4)
    assert time.monotonic() - started >= 0.865 / 4


# -- interactive mode -------------------------------------------------------------------------


async def test_interactive_mode_asks_only_when_a_reading_command_needs_keys() -> None:
    answers = iter(["12345678#", ".", "!"])
    asked: list[int] = []

    async def ask() -> list[KeyToken]:
        asked.append(1)
        return parse_keys(next(answers))

    _, peer = await call(
        commands(
            'STREAM FILE vm-goodbye "0123456789*#"',
            "WAIT FOR DIGIT 8000",
            "GET DATA silence/1 5000 12",
            "WAIT FOR DIGIT 8000",
            "WAIT FOR DIGIT 8000",
        ),
        keys=None,
        ask=ask,
    )
    assert replies(peer) == [
        "200 result=0 endpos=6920",
        "200 result=49",
        "200 result=2345678",
        "200 result=0",
        "200 result=-1",
    ]
    assert len(asked) == 3


async def test_ask_stdin_reads_lines_and_asks_again_after_a_mistake(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("12a\n12#\n\n"))
    assert await ask_stdin() == parse_keys("12#")
    assert await ask_stdin() == parse_keys(".")  # an empty line: no input
    assert await ask_stdin() == parse_keys("!")  # end of input: the caller hangs up
    output = capsys.readouterr()
    assert output.out.count("keys> ") == 4 and "bad character 'a'" in output.err


# -- the recording: MixMonitor as the dialplan, EXEC and AMI drive it --------------------------


async def test_the_dialplan_mixmonitor_records_from_the_start_and_exec_stops_and_appends() -> None:
    record, peer = await call(
        commands(
            "GET VARIABLE MIXMONITOR_FILENAME",
            'STREAM FILE ivrs/login/account ""',
            'EXEC StopMixMonitor ""',
            'STREAM FILE ivrs/login/password ""',
            'EXEC MixMonitor "/var/spool/asterisk/monitor/1795420955.1.wav,a"',
            'STREAM FILE ivrs/bundle/ccrn_confirm ""',
        ),
        uniqueid="1795420955.1",
    )
    file = "/var/spool/asterisk/monitor/1795420955.1.wav"
    assert record.recording == file
    assert replies(peer)[0] == f"200 result=1 ({file})"
    assert replies(peer)[2] == replies(peer)[4] == "200 result=0"  # 05: both answer 0
    prompts = [(s.files[0], s.recorded_to) for s in record.timeline if s.kind == "prompt"]
    assert prompts == [
        ("ivrs/login/account", file),
        ("ivrs/login/password", None),  # stopped: not in the file
        ("ivrs/bundle/ccrn_confirm", file),  # appended after the rest
    ]


async def test_a_mixmonitor_without_append_overwrites_and_b_records_nothing() -> None:
    file = "/var/spool/asterisk/monitor/x.wav"
    record, _ = await call(
        commands(
            'STREAM FILE ivrs/login/account ""',
            f'EXEC MixMonitor "{file}"',
            'STREAM FILE ivrs/login/account ""',
            f'EXEC MixMonitor "{file},b"',
            'STREAM FILE ivrs/bundle/ccrn_confirm ""',
            'EXEC MixMonitor ""',
        ),
        uniqueid="x",
    )
    prompts = [(s.files[0], s.recorded_to) for s in record.timeline if s.kind == "prompt"]
    assert prompts == [
        ("ivrs/login/account", None),  # overwritten by the second MixMonitor of the same file
        ("ivrs/login/account", None),  # ... and by the third, which had `b`
        ("ivrs/bundle/ccrn_confirm", None),  # `b`: only while bridged, and an IVR call never is
    ]
    assert record.variables["MIXMONITOR_FILENAME"] == file
    assert record.exchanges[-1].reply == ["200 result=-1"]  # MixMonitor needs a file name


async def test_without_the_dialplan_mixmonitor_nothing_is_recorded() -> None:
    record, peer = await call(
        commands("GET VARIABLE MIXMONITOR_FILENAME", 'STREAM FILE ivrs/login/account ""'),
        mixmonitor=False,
    )
    assert replies(peer)[0] == "200 result=0" and record.recording is None
    assert all(s.recorded_to is None for s in record.timeline)
