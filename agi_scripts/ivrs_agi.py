"""Classic AGI: one process per call on stdin/stdout, running the same call flow as the FastAGI
server (ivr/flow.py), for sites that cannot use FastAGI. In the dialplan, instead of
`AGI(agi://...)`:

    same => n,AGI(/usr/local/bin/ivrs-agi,${EXTEN})      ; the `ivrs-agi` console script

What Asterisk does with a local AGI script (res_agi.c launch_script and run_agi): it starts it
with the AGI() arguments, writes the `agi_*` header on its stdin (`agi_request` is the script;
no `agi_network` lines), and reads one command per line from its stdout. On a hang-up it sends
the process SIGHUP (unless AGISIGHUP=no), never a `HANGUP` line, then answers 511 to commands
that need the channel. The AGI ends when the script closes its stdout (exits); if it ends first
(AGIEXITONHANGUP=yes) Asterisk sends SIGHUP again and closes the pipes.

So: the streams over stdin/stdout feed the same `Channel` as a FastAGI socket; SIGHUP marks the
channel hung up (Python would otherwise die of it, leaving the call log open); logs go to stderr
(stdout is the protocol). The recording is muted over AGI (StopMixMonitor, then MixMonitor
append, ivr/recording_mute.py): an AMI login for each call would cost more than those two EXECs.
Configuration: the same IVRS_* variables as `ivrs agi`, from Asterisk's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

import structlog

from backend_client import BackendClient
from backend_client.breaker import CircuitBreaker
from backend_client.call_log import CallLogOutbox
from backend_client.spool import Spool
from cli.logs import configure_logging
from ivr.call import Call
from ivr.channel import MAX_LINE, Channel, HeaderError, read_header
from ivr.flow import run_call
from ivr.settings import IvrSettings
from prompts.catalog import default_catalog

log = structlog.get_logger("agi_scripts.ivrs_agi")


async def stdio_streams(
    stdin: int = 0, stdout: int = 1
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over the process's stdin and stdout pipes (never blocking the loop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(stdin, "rb", 0, closefd=False)
    )
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
        os.fdopen(stdout, "wb", 0, closefd=False),
    )
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


async def serve_call(settings: IvrSettings) -> str:
    """Run one call over stdin/stdout; its outcome ("" when no call came: no header)."""
    reader, writer = await stdio_streams()
    try:
        headers = await read_header(reader)
    except HeaderError as e:
        log.warning("agi_header_refused", reason=str(e))
        writer.close()
        return ""
    uniqueid = headers.get("agi_uniqueid", "")
    channel = Channel(reader, writer, headers, log.bind(call=uniqueid))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, hung_up, channel)
    backend = BackendClient(
        settings.backend_url,
        settings.api_token,
        settings.backend_timeout,
        breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
    )
    # One spool directory per process (a spool belongs to one process): kept only if it holds
    # call logs the backend could not take.
    spool_dir = Path(settings.spool_dir) / f"classic-{uniqueid or os.getpid()}"
    outbox = CallLogOutbox(backend, Spool(spool_dir))
    await outbox.start()
    try:
        call = Call.from_channel(channel, backend, default_catalog(), settings, outbox)
        return await run_call(call)
    finally:
        await channel.close()  # closing stdout ends the AGI: Asterisk goes on at once
        await outbox.stop()
        await backend.close()
        with contextlib.suppress(OSError):
            if not any(spool_dir.glob("*.jsonl")):
                shutil.rmtree(spool_dir)


def hung_up(channel: Channel) -> None:
    """SIGHUP: the caller is gone. The command under way answers -1 (or 511); the next one
    raises CallerHungUp at once, as after a FastAGI `HANGUP` line."""
    if not channel.hung_up:
        channel.log.info("agi_sighup")
    channel.hung_up = True


def main() -> int:
    configure_logging()  # to stderr: stdout carries the AGI commands
    try:
        settings = IvrSettings.from_env()
    except ValueError as e:  # one line in Asterisk's log, not a traceback
        print(f"ivrs_agi.py: {e}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve_call(settings))
    except KeyboardInterrupt:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
