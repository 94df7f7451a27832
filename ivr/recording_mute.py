"""Secrets stay out of the call recording. The dialplan records every call with MixMonitor
(dialplan/extensions.conf); while the caller keys a password, a token code or an SMS code the
FastAGI server mutes that recording, then lifts the mute:

- through AMI `MixMonitorMute` (both directions) when the server has an AMI connection
  (ami_client/, made by ivr/ami_connection.py): the file keeps the time, as silence
  (tests/transcripts 09);
- otherwise, or when AMI fails, over AGI: `EXEC StopMixMonitor`, then after the secret
  `EXEC MixMonitor <the same file>,a` (append), the file named by MIXMONITOR_FILENAME: the file
  skips the secret (tests/transcripts 05: both answer `200 result=0`).

    async with secret_entry(call.channel, call.ami, call.log):
        password = await call.ask("login.password", ...)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ami_client import Ami, AmiError, AmiUnavailable
from ivr.channel import Channel


@dataclass(frozen=True)
class _Muted:
    by: str  # "ami" | "agi"
    file: str | None  # what MixMonitor writes (MIXMONITOR_FILENAME), for the AGI way


@asynccontextmanager
async def secret_entry(channel: Channel, ami: Ami | None, log: Any) -> AsyncIterator[None]:
    """Mute the recording for the block; a call that is not recorded is left as it is."""
    muted = await _mute(channel, ami, log)
    try:
        yield
    finally:
        # After a hang-up the recording ends with the channel: nothing to lift.
        if muted is not None and not channel.hung_up:
            await _unmute(channel, ami, muted, log)


async def _mute(channel: Channel, ami: Ami | None, log: Any) -> _Muted | None:
    name = channel.headers.get("agi_channel")
    if ami is not None and name:
        try:
            await ami.mute_recording(name, True)
            log.info("recording_muted", by="ami")
            return _Muted("ami", None)
        except (AmiUnavailable, AmiError) as e:
            log.warning("recording_mute_by_ami_failed", error=str(e))
    file = await channel.get_var("MIXMONITOR_FILENAME")
    if not file:
        log.info("recording_not_running")
        return None
    await _exec(channel, "StopMixMonitor", "", log)
    log.info("recording_muted", by="agi")
    return _Muted("agi", file)


async def _unmute(channel: Channel, ami: Ami | None, muted: _Muted, log: Any) -> None:
    name = channel.headers.get("agi_channel")
    if muted.by == "ami" and ami is not None and name:
        try:
            await ami.mute_recording(name, False)
            log.info("recording_unmuted", by="ami")
            return
        except (AmiUnavailable, AmiError) as e:
            # Still muted, and AMI cannot say otherwise: a new MixMonitor (append) records on.
            log.warning("recording_unmute_by_ami_failed", error=str(e))
        file = await channel.get_var("MIXMONITOR_FILENAME")
        if not file:
            return
        await _exec(channel, "StopMixMonitor", "", log)
    else:
        file = muted.file
    await _exec(channel, "MixMonitor", f"{file},a", log)
    log.info("recording_unmuted", by="agi")


async def _exec(channel: Channel, application: str, arguments: str, log: Any) -> None:
    result = await channel.exec(application, arguments)
    if result != 0:  # -2: app_mixmonitor is not loaded
        log.error("recording_exec_failed", application=application, result=result)
