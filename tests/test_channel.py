"""The channel layer against the exact lines a real Asterisk 22 sent (tests/transcripts/).

Each test runs our real FastAGI reading code on a real TCP socket; the peer replays captured
lines as Asterisk would: the header, then for every command the lines captured for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ivr.channel import (
    AGIError,
    CallerHungUp,
    Channel,
    Entry,
    HeaderError,
    Reply,
    parse_reply,
    read_header,
    script_name,
)
from tests.transcripts import load

FIXTURES = {f"1:{k}": v for k, v in load("fixtures.json").items()} | {
    f"2:{k}": v for k, v in load("fixtures-2.json").items()
}


def lines_of(scenario: str, command: str, occurrence: int = 0) -> list[str | None]:
    """The captured lines Asterisk sent for one command of one scenario."""
    found = [e for e in FIXTURES[scenario]["exchanges"] if e["command"] == command]
    return [entry["line"] for entry in found[occurrence]["lines"]]


ChannelTest = Callable[[Channel], Awaitable[object]]
CLOSE = None  # in a list of lines to send: the peer closes the connection there


async def with_asterisk(
    header: list[str],
    answer: Callable[[str], list[str | None]],
    test: ChannelTest,
) -> tuple[object, list[str], bool]:
    """Run `test` on our Channel while a peer plays Asterisk: it sends `header`, then answers
    each command with the lines `answer(command)` gives (CLOSE: close the connection there).
    Returns the test's result, the commands the peer received, and whether our side closed
    the connection."""
    commands: list[str] = []
    we_closed = False
    result: dict[str, object] = {}

    async def ours(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = await read_header(reader)
        channel = Channel(reader, writer, headers)
        try:
            result["value"] = await test(channel)
        except Exception as e:  # noqa: BLE001 - handed to the test to assert on
            result["value"] = e
        finally:
            await channel.close()

    server = await asyncio.start_server(ours, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write("".join(f"{h}\n" for h in header).encode() + b"\n")
    peer_open = True
    while peer_open:
        raw = await reader.readline()
        if not raw:
            we_closed = True
            break
        command = raw.decode().rstrip("\n")
        commands.append(command)
        for line in answer(command):
            if line is CLOSE:
                peer_open = False
                break
            writer.write(f"{line}\n".encode())
    writer.close()
    server.close()
    await server.wait_closed()
    for _ in range(200):  # our handler finishes after the peer is gone
        if "value" in result:
            break
        await asyncio.sleep(0.01)
    return result.get("value"), commands, we_closed


def replay_lines(scenario: dict) -> list[tuple[str, list[str | None]]]:
    """(command, lines sent for it) per exchange, the unsolicited lines placed where they
    arrived in time; after the last exchange, the rest, and CLOSE if Asterisk closed."""
    exchanges = [e for e in scenario["exchanges"] if not e.get("no_reply")]
    pending = list(scenario.get("unsolicited") or [])
    out: list[tuple[str, list[str | None]]] = []
    for i, exchange in enumerate(exchanges):
        lines: list[str | None] = []
        while pending and pending[0]["at"] <= exchange["at"]:
            lines.append(pending.pop(0)["line"])
        lines += [entry["line"] for entry in exchange["lines"]]
        if i == len(exchanges) - 1:
            lines += [u["line"] for u in pending]
            if (scenario.get("closed") or {}).get("by") == "asterisk":
                lines.append(CLOSE)
        out.append((exchange["command"], lines))
    return out


def replay(scenario: dict) -> Callable[[str], list[str | None]]:
    queue = replay_lines(scenario)

    def answer(command: str) -> list[str | None]:
        if not queue:
            return [CLOSE]
        expected_command, lines = queue.pop(0)
        assert command == expected_command
        return lines

    return answer


def expected_outcome(lines: list[str | None]) -> type[Exception] | Reply:
    said = [line for line in lines if line is not None]
    # The answer is the last numbered line; a HANGUP after it belongs to no command.
    at = max(i for i, line in enumerate(said) if line[:1].isdigit())
    if "HANGUP" in said[:at] or said[at].startswith("511"):
        return CallerHungUp
    if said[at].startswith(("510", "520")):
        return AGIError
    return parse_reply(said[at])


# Pipelined commands (a second command sent while one runs) are something our channel never
# does: it holds a lock for one command at a time. Those exchanges are left out of the replay.
@pytest.mark.parametrize("name", sorted(FIXTURES))
async def test_every_captured_exchange_is_read_as_asterisk_meant_it(name: str) -> None:
    scenario = FIXTURES[name]
    exchanges = replay_lines(scenario)

    async def run(channel: Channel) -> list[object]:
        outcomes: list[object] = []
        for command, _ in exchanges:
            try:
                outcomes.append(await channel.command(command))
            except (CallerHungUp, AGIError) as e:
                outcomes.append(type(e))
                if isinstance(e, CallerHungUp):
                    break
        return outcomes

    outcomes, commands, we_closed = await with_asterisk(scenario["header"], replay(scenario), run)
    expected = [expected_outcome(lines) for _, lines in exchanges]
    if CallerHungUp in expected:  # nothing is sent once the hang-up is known
        expected = expected[: expected.index(CallerHungUp) + 1]
    assert outcomes == expected
    assert commands == [command for command, _ in exchanges][: len(expected)]
    if (scenario.get("closed") or {}).get("by") != "asterisk":
        assert we_closed, "the server must close the connection itself (transcript 07)"


async def test_header_gives_arguments_and_strips_the_query_from_the_script() -> None:
    header = FIXTURES["2:env"]["header"]

    async def run(channel: Channel) -> dict[str, str]:
        return channel.headers

    headers, _, _ = await with_asterisk(header, lambda c: [CLOSE], run)
    assert isinstance(headers, dict)
    assert script_name(headers) == "ivrs"
    assert headers["agi_arg_2"] == "two words"
    assert headers["agi_arg_3"] == ""  # an empty argument still arrives
    assert headers["agi_accountcode"] == ""
    assert headers["agi_callerid"] == "85291234567"


async def test_header_cut_by_eof_is_refused_not_spun_on() -> None:
    server_result: list[object] = []

    async def ours(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            server_result.append(await read_header(reader, timeout=5))
        except HeaderError as e:
            server_result.append(e)
        writer.close()

    server = await asyncio.start_server(ours, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(b"agi_network: yes\nagi_network_script: ivrs\n")
    writer.close()
    for _ in range(100):
        if server_result:
            break
        await asyncio.sleep(0.01)
    server.close()
    assert isinstance(server_result[0], HeaderError)


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (b"GET / HTTP/1.0\n\n", "not an agi_ header line"),
        (b"agi_network: yes\nagi_request\n\n", "not an agi_ header line"),
        (b"".join(b"agi_x%d: y\n" % n for n in range(201)) + b"\n", "header too long"),
        (b"agi_network: yes\n", "header timed out"),
    ],
)
async def test_a_header_that_is_not_asterisks_is_refused_with_the_reason(
    sent: bytes, reason: str
) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(sent)
    with pytest.raises(HeaderError, match=reason):
        await read_header(reader, timeout=0.2)


def one_reply(lines: list[str | None]) -> Callable[[str], list[str | None]]:
    return lambda command: lines


async def test_barge_in_comes_back_as_the_key_not_its_ascii_code() -> None:
    lines = lines_of("1:stream_bargein", 'STREAM FILE ivrs-long "0123456789*#"')
    key, _, _ = await with_asterisk(
        FIXTURES["1:env"]["header"], one_reply(lines), lambda ch: ch.stream("ivrs-long")
    )
    assert key == "5"


@pytest.mark.parametrize(
    ("scenario", "command", "entry"),
    [
        ("1:getdata_hash", "GET DATA ivrs-long 5000 10", Entry("12345", False)),
        ("1:getdata_partial", "GET DATA ivrs-long 3000 6", Entry("12", True)),
        ("1:getdata_timeout", "GET DATA beep 2000 4", Entry("", True)),
        ("1:getdata_hashonly", "GET DATA ivrs-long 3000 4", Entry("", False)),
        ("1:getdata_star", "GET DATA ivrs-long 3000 4", Entry("*1", False)),
    ],
)
async def test_get_data_keeps_the_timeout_that_panoramisk_loses(
    scenario: str, command: str, entry: Entry
) -> None:
    file, timeout, max_digits = command.split(" ")[2:]
    got, sent, _ = await with_asterisk(
        FIXTURES["1:env"]["header"],
        one_reply(lines_of(scenario, command)),
        lambda ch: ch.get_data(file, int(timeout), int(max_digits)),
    )
    assert got == entry
    assert sent == [command]


async def test_wait_digit_reads_ascii_codes_and_timeout() -> None:
    replies = iter(
        [
            lines_of("1:waitdigit", "WAIT FOR DIGIT 5000"),
            lines_of("1:waitdigit", "WAIT FOR DIGIT 1000"),
        ]
    )

    async def run(channel: Channel) -> list[str | None]:
        return [await channel.wait_digit(5000), await channel.wait_digit(1000)]

    got, _, _ = await with_asterisk(FIXTURES["1:env"]["header"], lambda c: next(replies), run)
    assert got == ["7", None]


async def test_missing_prompt_is_told_apart_from_a_hangup_and_the_call_goes_on() -> None:
    answers = iter(
        [
            lines_of("2:stream", 'STREAM FILE no-such-file "0123456789*#"'),
            ["200 result=6"],  # CHANNEL STATUS: still up
            lines_of("2:stream", 'STREAM FILE vm-goodbye ""'),
        ]
    )

    async def run(channel: Channel) -> tuple[str | None, list[str], bool]:
        key = await channel.stream("no-such-file")
        await channel.stream("vm-goodbye", "")
        return key, channel.missing_prompts, channel.hung_up

    got, sent, _ = await with_asterisk(FIXTURES["1:env"]["header"], lambda c: next(answers), run)
    assert got == (None, ["no-such-file"], False)
    assert sent[1] == "CHANNEL STATUS"


async def test_minus_one_then_hangup_line_raises_caller_hung_up() -> None:
    answers = iter(
        [
            lines_of("2:hupstream", 'STREAM FILE vm-intro ""'),
            lines_of("2:hupstream", 'STREAM FILE vm-goodbye ""'),  # HANGUP, then 511
        ]
    )
    got, sent, closed = await with_asterisk(
        FIXTURES["1:env"]["header"], lambda c: next(answers), lambda ch: ch.stream("vm-intro", "")
    )
    assert got.__class__ is CallerHungUp
    assert sent == ['STREAM FILE vm-intro ""', "CHANNEL STATUS"]
    assert closed


async def test_minus_one_without_sighup_is_a_hangup_by_its_511() -> None:
    answers = iter(
        [
            lines_of("2:hupnosighup", 'STREAM FILE vm-intro ""'),
            lines_of("2:hupnosighup", "ANSWER", 1),  # 511, no HANGUP line (AGISIGHUP=no)
        ]
    )
    got, _, _ = await with_asterisk(
        FIXTURES["1:env"]["header"], lambda c: next(answers), lambda ch: ch.stream("vm-intro", "")
    )
    assert got.__class__ is CallerHungUp


async def test_both_forms_of_520_leave_the_replies_in_step() -> None:
    multi = lines_of("2:errors", "GET DATA")
    single = lines_of("1:errors", "GET DATA")
    answers = iter([multi, ["200 result=0"], single, ["200 result=1"]])

    async def run(channel: Channel) -> list[object]:
        got: list[object] = []
        for command in ("GET DATA", "ANSWER", "GET DATA", 'VERBOSE "x" 1'):
            try:
                got.append(await channel.command(command))
            except AGIError as e:
                got.append(e.code)
        return got

    got, _, _ = await with_asterisk(FIXTURES["1:env"]["header"], lambda c: next(answers), run)
    assert got == [520, Reply("0"), 520, Reply("1")]


async def test_eof_from_asterisk_is_a_hangup() -> None:
    async def run(channel: Channel) -> object:
        return await channel.stream("vm-intro", "")

    got, _, _ = await with_asterisk(
        FIXTURES["1:env"]["header"],
        one_reply(["200 result=-1 endpos=8000", "HANGUP", "HANGUP", CLOSE]),
        run,
    )
    assert got.__class__ is CallerHungUp


def test_arguments_cannot_smuggle_a_second_command() -> None:
    from ivr.channel import quote

    assert quote('say "hi"') == '"say \\"hi\\""'
    with pytest.raises(ValueError):
        quote("x\nHANGUP")
