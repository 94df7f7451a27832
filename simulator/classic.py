"""The simulator driving a classic AGI script (one process per call) as Asterisk does: the same
SimulatedAsterisk as place_call, over the script's stdin and stdout instead of a socket.

    record = await run_classic_agi([sys.executable, "-m", "agi_scripts.ivrs_agi"], keys="...")

What differs from FastAGI (res_agi.c launch_script and run_agi): the script is started with the
AGI() arguments after its own (`args`, also sent as agi_arg_N); the header has no agi_network
lines and agi_request is the script's path; a hang-up is told by SIGHUP, never by a `HANGUP`
line (none at all with sighup=False, as AGISIGHUP=no); the AGI ends when the script closes its
stdout, and then Asterisk closes the script's stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from .asterisk import SimulatedAsterisk
from .call_record import CallRecord

EXIT_WAIT_S = 10.0  # how long the script may take to exit once the AGI has ended


async def run_classic_agi(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    script_path: str | None = None,
    stderr: int | None = None,
    **options: Any,
) -> CallRecord:
    """Start `argv` (plus the call's AGI() arguments) and play the call over its pipes.
    `options` are SimulatedAsterisk's; `script_path` is agi_request (default argv[0]);
    `stderr` as for asyncio.create_subprocess_exec (default: inherited). The record's
    exit_code is the script's (a negative number: killed by that signal)."""
    asterisk = SimulatedAsterisk(**options)
    process = await asyncio.create_subprocess_exec(
        *argv,
        *asterisk.args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=dict(env) if env is not None else None,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        record = await asterisk.run(
            process.stdout, process.stdin, process=process, script_path=script_path or argv[0]
        )
        # Asterisk goes on without waiting (it reaps the process later); a test wants the end.
        record.exit_code = await asyncio.wait_for(process.wait(), EXIT_WAIT_S)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return record
