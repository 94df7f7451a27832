"""The FastAGI server's connection to Asterisk's manager interface (AMI): one long-lived
panoramisk `Manager` for the whole process, which logs in again by itself when Asterisk (or
its AMI) restarts. Used to mute a call's recording while a secret is keyed
(`MixMonitorMute`, ivr/recording.py), to list live calls (`CoreShowChannels`) and to let a
supervisor listen in (`listen_in`: an `Originate` of ChanSpy).

    ami = Ami.from_settings(settings)    # None when IVRS_AMI_HOST is not set
    await ami.start()                    # returns at once; it connects (and reconnects) alone
    await ami.mute_recording("PJSIP/carrier-0000002a", True)

While the connection is down, every action raises `AmiUnavailable` at once rather than
waiting: callers fall back (the recording is stopped over AGI instead, ivr/recording.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.message import Message

from ivr.settings import IvrSettings

log = structlog.get_logger("ivr.ami")

# panoramisk queues unanswered actions across a reconnect and sends them again later; a mute
# sent late would silence the wrong part of a call, so none of ours is ever sent again.
NEVER_RESENT = ("ping", "login", "mixmonitormute", "coreshowchannels", "originate")


class AmiUnavailable(Exception):
    """Not connected and logged in, or no answer in time."""


class AmiError(Exception):
    """Asterisk refused the action (`Response: Error`); the text is its `Message`."""


class _Manager(Manager):
    """panoramisk's Manager, which can be closed for good: its reconnect timers call connect()
    later and cannot be cancelled."""

    closed = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return None if self.closed else super().connect(*args, **kwargs)


class Ami:
    """One AMI login, kept up. `ready` is set while logged in, `down` once the connection is
    lost (until the next login)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        timeout: float = 2.0,
        reconnect_s: int = 1,
        ping_s: int = 10,
    ):
        self.host, self.port, self.timeout = host, port, timeout
        self.ready = asyncio.Event()
        self.down = asyncio.Event()
        self.logins = 0  # how many times it logged in: 2 and more after a reconnect
        self.manager = _Manager(
            loop=asyncio.get_running_loop(),
            host=host,
            port=port,
            username=username,
            secret=secret,
            events="off",  # it only sends actions (09's login does the same)
            ping_delay=ping_s,
            ping_interval=ping_s,
            reconnect_timeout=max(1, reconnect_s),  # panoramisk takes whole seconds
            forgetable_actions=NEVER_RESENT,
            on_login=self._logged_in,
            on_disconnect=self._lost,
            log=logging.getLogger("ivr.ami.panoramisk"),
        )
        self._started = False

    @classmethod
    def from_settings(cls, settings: IvrSettings) -> Ami | None:
        if not settings.ami_host:
            return None
        return cls(
            settings.ami_host,
            settings.ami_port,
            settings.ami_username,
            settings.ami_secret,
            timeout=settings.ami_timeout,
        )

    async def start(self) -> None:
        """Start connecting; a server that is down is retried every `reconnect_s`."""
        if not self._started:
            self._started = True
            self.manager.connect()

    async def wait_ready(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return self.ready.is_set()

    async def close(self) -> None:
        self.ready.clear()
        self.manager.closed = True
        self.manager.close()

    def _logged_in(self, manager: Manager) -> None:
        self.logins += 1
        self.down.clear()
        self.ready.set()
        log.info("ami_logged_in", host=self.host, port=self.port, logins=self.logins)

    def _lost(self, manager: Manager, exc: Exception | None) -> None:
        self.ready.clear()
        self.down.set()
        log.warning("ami_connection_lost", host=self.host, port=self.port)

    async def send(self, action: dict[str, Any], *, as_list: bool = False) -> Any:
        """Send one action; its response (a list: response and events, with as_list)."""
        if not self.ready.is_set():
            raise AmiUnavailable(f"AMI {self.host}:{self.port} not connected")
        try:
            reply = await asyncio.wait_for(
                self.manager.send_action(action, as_list=as_list), self.timeout
            )
        except TimeoutError:
            raise AmiUnavailable(f"no AMI answer to {action['Action']} in time") from None
        first: Message = reply[0] if isinstance(reply, list) else reply
        if first.response == "Error":
            raise AmiError(first.message or "error")
        return reply

    async def mute_recording(self, channel: str, muted: bool) -> None:
        """MixMonitorMute of both directions of `channel`'s recording (09)."""
        await self.send(
            {
                "Action": "MixMonitorMute",
                "Channel": channel,
                "Direction": "both",
                "State": "1" if muted else "0",
            }
        )

    async def live_channels(self) -> list[dict[str, str]]:
        """CoreShowChannels: one dict per channel, with Asterisk's field names (09)."""
        replies = await self.send({"Action": "CoreShowChannels"}, as_list=True)
        return [dict(m) for m in replies if m.event == "CoreShowChannel"]


async def listen_in(ami: Ami, channel: str, extension: str, context: str) -> Message:
    """Ring a supervisor at `extension@context`; once answered they hear `channel` (ChanSpy
    `q`: no beep and no channel name spoken; `E`: ends when that call ends). Listen only:
    no whisper or barge option, so the caller never hears the supervisor. Returns Asterisk's
    acknowledgement once the call is queued (Async: the ringing does not hold the connection).
    """
    reply: Message = await ami.send(
        {
            "Action": "Originate",
            "Channel": f"Local/{extension}@{context}",
            "Application": "ChanSpy",
            "Data": f"{channel},qE",
            "CallerID": f'"IVRS listen" <{extension}>',
            "Async": "true",
        }
    )
    return reply
