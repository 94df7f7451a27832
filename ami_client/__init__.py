"""One long-lived connection to Asterisk's manager interface (AMI), shared by the FastAGI server
(to mute a call's recording while a secret is keyed, `MixMonitorMute`; to list live calls,
`CoreShowChannels`) and the backend's console (to let a supervisor listen in: `listen_in`, an
`Originate` of ChanSpy). A neutral package, so the backend need not import the IVR.

It is panoramisk's `Manager`, which logs in again by itself when Asterisk (or its AMI)
restarts:

    ami = Ami("127.0.0.1", 5038, "ivrs", secret)
    await ami.start()                    # returns at once; it connects (and reconnects) alone
    await ami.mute_recording("PJSIP/carrier-0000002a", True)
    await ami.close()

While the connection is down, every action raises `AmiUnavailable` at once rather than
waiting: callers fall back (the IVR stops the recording over AGI instead) or say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import structlog
from panoramisk import Manager
from panoramisk.message import Message

__all__ = [
    "Ami",
    "AmiError",
    "AmiUnavailable",
    "CHANNEL_NAME",
    "CHANSPY_OPTIONS",
    "is_channel_name",
    "listen_in",
]

log = structlog.get_logger("ami")

# panoramisk queues unanswered actions across a reconnect and sends them again later; a mute
# sent late would silence the wrong part of a call, so none of ours is ever sent again.
NEVER_RESENT = ("ping", "login", "mixmonitormute", "coreshowchannels", "originate")

# ChanSpy options for listening in. q: no beep, no channel name spoken to the supervisor.
# E: end when the spied call hangs up. S: end when there is no channel left to spy on. S is
# needed as well: when the call ends while the supervisor's phone is still ringing, ChanSpy
# finds no channel, and E alone would keep it looking (app_chanspy.c loops until S or a
# hang-up), holding the supervisor on a silent line. No w, W or B: the caller never hears the
# supervisor. No b: an IVR call is never bridged.
CHANSPY_OPTIONS = "qES"
RING_FOR_MS = 30_000  # how long the supervisor's phone rings
# A channel name as Asterisk makes them: TECH/resource, e.g. PJSIP/carrier-0000002a,
# Local/201@ivrs-supervisors-00000002;1, DAHDI/1-1. Never a ',' or '|' (application argument
# separators: "PJSIP/,wB" would make ChanSpy whisper and barge), a space, CR or LF (a new AMI
# header), nor an empty resource (ChanSpy takes a prefix: "PJSIP/" is every PJSIP channel).
CHANNEL_NAME = r"[A-Za-z][A-Za-z0-9]{0,15}/[A-Za-z0-9][A-Za-z0-9@._+:#*~/-]{0,110}(;[12])?"
_CHANNEL = re.compile(CHANNEL_NAME)


def is_channel_name(name: str) -> bool:
    return _CHANNEL.fullmatch(name) is not None


class AmiUnavailable(Exception):
    """Not connected and logged in, or no answer in time."""


class AmiError(Exception):
    """Asterisk refused the action (`Response: Error`); the text is its `Message`."""


class _Manager(Manager):
    """panoramisk's Manager, which can be closed for good: its reconnect timers call connect()
    later and cannot be cancelled, and a connection under way would still be taken."""

    closed = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return None if self.closed else super().connect(*args, **kwargs)

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if not self.closed:
            super().connection_made(f)
        elif not f.cancelled() and f.exception() is None:
            _transport, protocol = f.result()
            protocol.close()  # marks it closed: its connection_lost has no manager to call


class Ami:
    """One AMI login, kept up. `ready` is set while logged in, `down` once the connection is
    lost (until the next login). `timeout`: seconds an action waits for its answer."""

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
            events="off",  # it only sends actions (tests/transcripts 09's login does the same)
            ping_delay=ping_s,
            ping_interval=ping_s,
            reconnect_timeout=max(1, reconnect_s),  # panoramisk takes whole seconds
            forgetable_actions=NEVER_RESENT,
            on_login=self._logged_in,
            on_disconnect=self._lost,
            log=logging.getLogger("ami.panoramisk"),
        )
        self._started = False

    async def start(self) -> None:
        """Start connecting; a server that is down is retried every `reconnect_s`."""
        if not self._started:
            self._started = True
            self.manager.connect()

    async def wait_ready(self, timeout: float) -> bool:
        """Whether it is logged in, waiting up to `timeout` seconds for a login under way."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: it can drop a cancellation (3.11)
                await self.ready.wait()
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

    async def send(self, action: dict[str, Any], *, as_list: bool | None = False) -> Any:
        """Send one action; its response (a list: response and events, with as_list; None:
        a list when Asterisk says one follows, else the one response)."""
        if any("\r" in f"{k}{v}" or "\n" in f"{k}{v}" for k, v in action.items()):
            raise AmiError("a CR or LF in an action's field (it would start another header)")
        if not self.ready.is_set():
            raise AmiUnavailable(f"AMI {self.host}:{self.port} not connected")
        try:
            # as_list=False: the one response. panoramisk would otherwise wait for the events
            # of some actions (an Async Originate's OriginateResponse: after the answer).
            async with asyncio.timeout(
                self.timeout
            ):  # not wait_for: it can drop a cancellation (3.11)
                reply = await self.manager.send_action(action, as_list=as_list)
        except TimeoutError:
            raise AmiUnavailable(f"no AMI answer to {action['Action']} in time") from None
        first: Message = reply[0] if isinstance(reply, list) else reply
        if first.response == "Error":
            raise AmiError(first.message or "error")
        return reply

    async def mute_recording(self, channel: str, muted: bool) -> None:
        """MixMonitorMute of both directions of `channel`'s recording (tests/transcripts 09)."""
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
        # as_list=None, not True: panoramisk waits for the list's end even after a one-message
        # refusal (actions.py: a forced list needs two messages), and a user without
        # `reporting` would look like an AMI that never answers.
        replies = await self.send({"Action": "CoreShowChannels"}, as_list=None)
        listed = replies if isinstance(replies, list) else [replies]
        return [dict(m) for m in listed if m.event == "CoreShowChannel"]


async def listen_in(ami: Ami, channel: str, extension: str, context: str) -> Message:
    """Ring a supervisor at `extension@context` (for RING_FOR_MS); once answered they hear
    `channel`, and only hear it (ChanSpy with CHANSPY_OPTIONS). Returns Asterisk's
    acknowledgement once the call is queued (Async: the ringing does not hold the connection).
    """
    if not is_channel_name(channel):
        raise AmiError("not a channel name Asterisk makes")
    reply: Message = await ami.send(
        {
            "Action": "Originate",
            "Channel": f"Local/{extension}@{context}",
            "Application": "ChanSpy",
            "Data": f"{channel},{CHANSPY_OPTIONS}",
            "CallerID": f'"Listen in" <{extension}>',
            "Timeout": str(RING_FOR_MS),
            "Async": "true",
        }
    )
    return reply
