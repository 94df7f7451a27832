"""Listening in: Asterisk rings the supervisor's extension and, when answered, runs ChanSpy on
the caller's channel, through AMI (panoramisk's Manager, one long-lived connection in the
backend app's cleanup_ctx that reconnects by itself).

ChanSpy options: q (no beep or channel name announced to the supervisor), E (leave when the
spied call hangs up), S (stop rather than look for another channel). No w or B: the
supervisor listens only, the caller hears nothing. No b either: an IVR call is never bridged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from panoramisk import Manager

from backend.api import SETTINGS
from backend.settings import BackendSettings

log = structlog.get_logger(__name__)

CHANSPY_OPTIONS = "qES"
RING_FOR_MS = 30_000  # how long the supervisor's phone rings
ANSWER_TIMEOUT = 10.0  # seconds for AMI to answer the Originate
LOGIN_WAIT = 2.0  # seconds a request waits for a login under way
MANAGER: web.AppKey[Any] = web.AppKey("console_ami_manager", object)


class ListenInError(Exception):
    """Asterisk could not be asked, or refused: the message says which."""


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager, which retries a failed connection forever, also after close():
    once closed, no retry. `ready` is set while logged in."""

    closed = False

    def __init__(self, **config: Any) -> None:
        self.ready = asyncio.Event()
        super().__init__(on_login=self._logged_in, on_disconnect=self._lost, **config)

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            return None
        return super().connect(*args, **kwargs)

    def _logged_in(self, manager: Manager) -> None:
        self.ready.set()

    def _lost(self, manager: Manager, exc: Exception | None) -> None:
        self.ready.clear()
        log.warning("ami_connection_lost")


def configured(config: BackendSettings) -> bool:
    return bool(config.ami_host and config.ami_username)


def missing(config: BackendSettings, extension: str | None) -> list[str]:
    """What listening in still needs, for the page to say."""
    needs = []
    if not configured(config):
        needs.append("AMI settings (IVRS_AMI_HOST, IVRS_AMI_USERNAME, IVRS_AMI_SECRET)")
    if not extension:
        needs.append("your extension (ivrs admin create-supervisor --extension)")
    return needs


async def ami_manager(app: web.Application) -> AsyncIterator[None]:
    """The AMI connection, when AMI is configured; it connects in the background, so the
    backend starts even while Asterisk is down."""
    config = app[SETTINGS]
    if not configured(config):
        app[MANAGER] = None
        yield
        return
    manager = _Manager(
        host=config.ami_host,
        port=config.ami_port,
        username=config.ami_username,
        secret=config.ami_secret,
        events="off",  # the console only sends actions
        loop=asyncio.get_running_loop(),
        reconnect_timeout=2,
    )
    app[MANAGER] = manager
    connecting = manager.connect()
    yield
    manager.closed = True
    with contextlib.suppress(Exception):
        connecting.cancel()
    manager.close()


async def originate_chanspy(
    manager: Any, config: BackendSettings, channel: str, extension: str
) -> None:
    """Ring `extension` (in the listen context) into ChanSpy of `channel`, with the app's
    `manager` (None when AMI is not configured)."""
    if manager is None:
        raise ListenInError("AMI is not configured")
    with contextlib.suppress(TimeoutError):  # just started or reconnecting: a moment
        await asyncio.wait_for(manager.ready.wait(), LOGIN_WAIT)
    if not manager.ready.is_set():
        raise ListenInError("not connected to Asterisk's AMI (or the AMI login was refused)")
    action = {
        "Action": "Originate",
        "Channel": f"Local/{extension}@{config.listen_context}",
        "Application": "ChanSpy",
        "Data": f"{channel},{CHANSPY_OPTIONS}",
        "CallerID": f'"Listen in" <{extension}>',
        "Timeout": str(RING_FOR_MS),
        "Async": "true",
    }
    try:
        # as_list=False: the answer is the one response (panoramisk would otherwise wait for
        # the OriginateResponse event of an Async originate, after the phone is answered).
        response = await asyncio.wait_for(
            manager.send_action(action, as_list=False), ANSWER_TIMEOUT
        )
    except (TimeoutError, OSError, AttributeError) as e:  # AttributeError: no connection yet
        raise ListenInError(f"AMI did not answer ({type(e).__name__})") from None
    if not getattr(response, "success", False):
        message = response.get("Message", "refused") if hasattr(response, "get") else "refused"
        raise ListenInError(f"AMI answered: {message}")
    log.info("listen_in_originated", channel=channel, extension=extension)
