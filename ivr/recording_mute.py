"""Secrets stay out of the call recording. The dialplan records every call with MixMonitor
(dialplan/extensions.conf); while the caller keys a password, a token code or an SMS code the
FastAGI server mutes that recording, then lifts the mute:

- through AMI `MixMonitorMute` (both directions) when the server has an AMI connection
  (ami_client/, made by ivr/ami_connection.py): the file keeps the time, as silence
  (tests/transcripts 09); only on the call's own channel: the name the FastAGI header gives
  (`agi_channel`) is used only once Asterisk's channel list (CoreShowChannels) shows that
  name with the call's `agi_uniqueid`, so a peer claiming another call's channel mutes
  nothing of it; the mute is lifted whatever happens, after a hang-up too;
- otherwise, or when AMI fails, over AGI: `EXEC StopMixMonitor`, then after the secret
  `EXEC MixMonitor <the same file>,a` (append), the file named by MIXMONITOR_FILENAME: the file
  skips the secret (tests/transcripts 05: both answer `200 result=0`).

    async with secret_entry(call.channel, call.ami, call.log):
        password = await call.ask("login.password", ...)
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ami_client import Ami, AmiError, AmiUnavailable, is_channel_name
from ivr.channel import Channel


@dataclass(frozen=True)
class _Muted:
    by: str  # "ami" | "agi"
    file: str | None  # what MixMonitor writes (MIXMONITOR_FILENAME), for the AGI way
    name: str | None = None  # the AMI way: the call's own channel, as Asterisk confirmed it


# Channels whose name Asterisk confirmed: one CoreShowChannels per call, not per secret.
_confirmed: weakref.WeakKeyDictionary[Channel, str] = weakref.WeakKeyDictionary()


async def _own_channel(channel: Channel, ami: Ami, log: Any) -> str | None:
    """The call's channel name, once Asterisk confirms it is this call's (its Uniqueid)."""
    if channel in _confirmed:
        return _confirmed[channel]
    name, uniqueid = channel.headers.get("agi_channel", ""), channel.headers.get("agi_uniqueid")
    if not is_channel_name(name) or not uniqueid:
        return None
    listed = await ami.live_channels()
    if not any(c.get("Channel") == name and c.get("Uniqueid") == uniqueid for c in listed):
        log.warning("recording_channel_not_confirmed", channel=name)
        return None
    _confirmed[channel] = name
    return name


@asynccontextmanager
async def secret_entry(channel: Channel, ami: Ami | None, log: Any) -> AsyncIterator[None]:
    """Mute the recording for the block; a call that is not recorded is left as it is."""
    muted = await _mute(channel, ami, log)
    try:
        yield
    finally:
        # Lifted after a hang-up too: an AMI mute is Asterisk's, not the connection's. (Over
        # AGI the recording ended with the channel: nothing to lift.)
        if muted is not None and (muted.by == "ami" or not channel.hung_up):
            await _unmute(channel, ami, muted, log)


async def _mute(channel: Channel, ami: Ami | None, log: Any) -> _Muted | None:
    if ami is not None:
        try:
            name = await _own_channel(channel, ami, log)
            if name is not None:
                await ami.mute_recording(name, True)
                log.info("recording_muted", by="ami")
                return _Muted("ami", None, name)
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
    if muted.by == "ami" and ami is not None and muted.name:
        try:
            await ami.mute_recording(muted.name, False)
            log.info("recording_unmuted", by="ami")
            return
        except (AmiUnavailable, AmiError) as e:
            # Still muted, and AMI cannot say otherwise: a new MixMonitor (append) records on.
            log.warning("recording_unmute_by_ami_failed", error=str(e))
        if channel.hung_up:
            return  # the channel, and its recording, are gone
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
