"""The FastAGI server fed malformed and truncated AGI headers and replies (Hypothesis, seeded),
over TCP, while it serves normal calls: it never crashes, never leaks a task or a socket, and
the normal calls bundle as usual.

Each example is a batch run at once: header cases (one connection each: a header cut short,
corrupted, too long, junk, a reset) and reply cases (a caller whose "Asterisk" answers the
server's commands with a script of odd, wrong or cut-off replies, many cases per connection),
and one normal bundling call. After each batch every connection the server had is finished and
closed, and no task of the IVR is left behind. The cases are counted: at least 10,000.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from backend.app import RunningBackend
from cli.logs import configure_logging
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import SimulatedAsterisk, place_call
from tests.support.truckers import MakeTrucker

pytestmark = pytest.mark.slow  # hypothesis feeds hundreds of malformed calls (~20-60 s)

EXAMPLES = 85
HEADER_CASES = 110  # per example: one connection each
REPLY_CONNECTIONS = 4  # per example (each a call: the backend's work makes these the dear ones)
REPLIES = 12  # per reply connection (fewer when the server ends the call first)
NORMAL_CALL_EVERY = 10  # examples: a whole bundling call costs as much as 300 header cases
MIN_CASES = 10_000
GUARD_S = 30  # a case taking this long means the server hangs: the test fails

VALID_HEADER = [
    line.replace("1700000000.1", "{uniqueid}")
    for line in SimulatedAsterisk(uniqueid="1700000000.1", caller_id="91234567").header(
        "127.0.0.1", 4573
    )
]


# --- what the fuzzer sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderCase:
    data: bytes
    reset: bool  # end with a TCP reset rather than a clean close


def header_bytes(lines: list[str], uniqueid: str, end: bool = True) -> bytes:
    text = "".join(line.format(uniqueid=uniqueid) + "\n" for line in lines)
    return (text + ("\n" if end else "")).encode()


junk_line = st.one_of(
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=80).map(lambda t: t.replace("\n", "").encode(errors="surrogatepass")),
    st.sampled_from([b"agi_", b"agi_x", b":", b"agi_request", b"\r", b"\x00" * 10, b"HANGUP"]),
    st.builds(
        lambda k, v: f"agi_{k}: {v}".encode(), st.text(max_size=20), st.text(max_size=40)
    ).map(lambda b: b.replace(b"\n", b"")),
)


@st.composite
def header_cases(draw: st.DrawFn) -> HeaderCase:
    uniqueid = f"1700000000.{draw(st.integers(0, 10**9))}"
    whole = header_bytes(VALID_HEADER, uniqueid)
    kind = draw(
        st.sampled_from(["truncated", "corrupted", "long_line", "many_lines", "junk", "script"])
    )
    if kind == "truncated":  # the connection ends mid-header (or right after it)
        data = whole[: draw(st.integers(0, len(whole)))]
    elif kind == "corrupted":  # one or more lines replaced by junk
        lines = [line.format(uniqueid=uniqueid).encode() for line in VALID_HEADER]
        for _ in range(draw(st.integers(1, 3))):
            lines[draw(st.integers(0, len(lines) - 1))] = draw(junk_line)
        data = b"".join(line + b"\n" for line in lines) + draw(st.sampled_from([b"\n", b""]))
    elif kind == "long_line":  # beyond the stream's 64 KiB line limit
        data = whole[:100] + b"agi_x: " + b"y" * draw(st.integers(65_536, 70_000)) + b"\n\n"
    elif kind == "many_lines":
        data = b"".join(b"agi_l%d: x\n" % n for n in range(draw(st.integers(190, 260)))) + b"\n"
    elif kind == "junk":
        data = draw(st.binary(max_size=400))
    else:  # a whole header, its script unknown or odd: no route, or a call that ends at once
        # Mostly no route (a call costs the backend far more than a refused header).
        script = draw(st.sampled_from(["ivrs?lang=yue", "nope", "", "é", "ivrs2", "/"]))
        lines = [
            f"agi_network_script: {script}" if line.startswith("agi_network_script") else line
            for line in VALID_HEADER
        ]
        data = header_bytes(lines, uniqueid) + draw(st.binary(max_size=60))
    return HeaderCase(data, draw(st.booleans()))


plausible_reply = st.one_of(
    st.builds(lambda n: f"200 result={n}", st.integers(-2, 1_200_000)),
    st.builds(lambda n: f"200 result={n} endpos={n * 7}", st.integers(-1, 70)),
    st.builds(lambda d: f"200 result={d}", st.text("0123456789*#", max_size=14)),
    st.builds(lambda d: f"200 result={d} (timeout)", st.text("0123456789", max_size=5)),
    st.builds(
        lambda t: f"200 result=1 ({t})", st.text(max_size=30).map(lambda t: t.replace("\n", ""))
    ),
    st.sampled_from(["200 result=0", "200 result=-1", "200 result=", "200 result=-1 endpos=0"]),
)
odd_reply = st.one_of(
    st.sampled_from(
        [
            "HANGUP\n200 result=0",  # unsolicited HANGUP before the reply
            "100 result=0 Trying...\n200 result=0",
            "510 Invalid or unknown command",
            "511 Command Not Permitted on a dead channel or intercept routine",
            "520 Invalid command syntax.  Proper usage not available.",
            "520-Invalid command syntax.  Proper usage follows:\nUsage: x\n520 End of usage.",
            "200",
            "200 result",
            "200 result=0 endpos=x",
            "",
            "   ",
            "\x00\x01\x02",
        ]
    ),
    st.text(max_size=60).map(lambda t: t.replace("\n", " ")),
)
# Last in a script only: the line is cut off (EOF follows), or is too long to be a line.
final_reply = st.one_of(
    st.sampled_from(["200 resu", "520-Invalid command syntax.  Proper usage follows:", ""]),
    st.builds(lambda n: "200 result=" + "9" * n, st.integers(70_000, 70_100)),
)


@dataclass(frozen=True)
class ReplyCase:
    replies: list[str]  # one per server command; the last may be cut off
    cut_off: bool  # the last is sent without its newline
    reset: bool


@st.composite
def reply_cases(draw: st.DrawFn) -> ReplyCase:
    replies = draw(
        st.lists(
            st.one_of(plausible_reply, plausible_reply, plausible_reply, odd_reply),
            min_size=REPLIES - 1,
            max_size=REPLIES - 1,
        )
    )
    cut_off = draw(st.booleans())
    replies.append(draw(final_reply if cut_off else st.one_of(plausible_reply, odd_reply)))
    return ReplyCase(replies, cut_off, draw(st.booleans()))


# --- the fuzzer's side of the wire --------------------------------------------------------------


def reset_on_close(writer: asyncio.StreamWriter) -> None:
    """SO_LINGER 0: close() sends a TCP reset instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def close(writer: asyncio.StreamWriter, reset: bool) -> None:
    if reset:
        reset_on_close(writer)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def send_header_case(port: int, case: HeaderCase) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(case.data)
        await writer.drain()
        if not case.reset:
            writer.write_eof()
            await asyncio.wait_for(reader.read(), GUARD_S)  # until the server closes
    except (ConnectionError, OSError):
        pass  # the server closed first: fine
    finally:
        await close(writer, case.reset)
    return 1


async def send_reply_case(port: int, case: ReplyCase, uniqueid: str) -> int:
    """Answer the server's commands with the case's replies; the number of replies sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(header_bytes(VALID_HEADER, uniqueid))
        for n, reply in enumerate(case.replies):
            command = await asyncio.wait_for(reader.readline(), GUARD_S)
            if not command:
                break  # the server ended the call
            last = n == len(case.replies) - 1
            writer.write(
                reply.encode(errors="surrogatepass") + (b"" if last and case.cut_off else b"\n")
            )
            await writer.drain()
            sent += 1
        writer.write_eof()
        await asyncio.wait_for(reader.read(), GUARD_S)
    except (ConnectionError, OSError):
        pass
    finally:
        await close(writer, case.reset)
    return sent


# --- what the server must still be ------------------------------------------------------------


def server_sockets(port: int) -> int:
    """Open sockets of this process whose local port is `port`, the listening one aside."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                listening = fields[3] == "0A"
                if local_port == port and not listening and fields[9] in ours:
                    count += 1
    return count


# The server's own tasks, which live as long as it does: the call logs' deliverer, the watch
# for unanswered commands.
LIFELONG = {"_deliver_forever", "watch_replies"}


def ivr_tasks() -> set[asyncio.Task[object]]:
    """Tasks running IVR code for calls (the server's connections, call logs, the spool)."""
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code else ""
        if ("/ivr/" in filename or "/backend_client/" in filename) and (
            code is not None and code.co_name not in LIFELONG
        ):
            found.add(task)
    return found


@pytest.fixture(autouse=True)
def plain_logs() -> Iterator[None]:
    """Logs as in production (JSON, plain tracebacks), errors only: structlog's default console
    renderer draws every traceback with its locals, which costs more than the cases."""
    before = structlog.get_config()
    configure_logging(level="error", fmt="json")
    yield
    structlog.configure(**before)


@pytest.fixture
async def agi(backend: RunningBackend, tmp_path: Path) -> AsyncIterator[RunningAgi]:
    settings = replace(
        IvrSettings(),
        backend_url=backend.url,
        api_token=backend.settings.api_token,
        backend_timeout=30,
        spool_dir=str(tmp_path / "spool"),
    )
    running = await start_agi_server(settings, port=0)
    yield running
    await running.stop(grace=5)


@pytest.fixture
def tally() -> Iterator[dict[str, int]]:
    counts = {"header": 0, "reply": 0, "normal_calls": 0, "examples": 0}
    yield counts
    print("fuzz cases:", counts)
    assert counts["header"] + counts["reply"] >= MIN_CASES, counts


# About 45 s on a quiet machine (11,000 cases: 1.4 ms a header, 4.5 ms a reply, 0.5 s a normal
# call, 0.1 s of Hypothesis per example); other jobs on the two cores can double it.
@pytest.mark.timeout(300)
@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same cases on every run
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # a failing batch is reported as it is
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one server for all examples, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    headers=st.lists(header_cases(), min_size=HEADER_CASES, max_size=HEADER_CASES),
    replies=st.lists(reply_cases(), min_size=REPLY_CONNECTIONS, max_size=REPLY_CONNECTIONS),
)
async def test_malformed_headers_and_replies_never_crash_leak_or_stop_normal_calls(
    agi: RunningAgi,
    make_trucker: MakeTrucker,
    tally: dict[str, int],
    headers: list[HeaderCase],
    replies: list[ReplyCase],
) -> None:
    example = tally["examples"] = tally["examples"] + 1
    fuzzing = asyncio.gather(
        *(send_header_case(agi.port, case) for case in headers),
        *(
            send_reply_case(agi.port, case, f"1700000001.{example:03d}{n}")
            for n, case in enumerate(replies)
        ),
    )
    if example % NORMAL_CALL_EVERY == 1:  # a normal call, while the fuzzer's cases run
        trucker = await make_trucker(cargo=1)
        record = await place_call(agi.host, agi.port, keys=trucker.bundle_keys(), totp=trucker.code)
        assert "bundle.submitted" in record.prompt_ids and record.prompt_ids[-1] == "call.goodbye"
        tally["normal_calls"] += 1
    results = await fuzzing

    # Every connection the server had is over, its socket closed, no IVR task left behind.
    if agi.app.connections:
        await asyncio.wait(list(agi.app.connections), timeout=GUARD_S)
    assert not agi.app.connections and not agi.app.channels and agi.app.idle.is_set()
    assert server_sockets(agi.port) == 0
    leftover = ivr_tasks()
    if leftover:
        await asyncio.wait(leftover, timeout=GUARD_S)  # call logs finishing their last request
    assert not ivr_tasks()

    tally["header"] += len(headers)
    tally["reply"] += sum(results[len(headers) :])
