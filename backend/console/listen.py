"""Listening in: Asterisk rings the supervisor's extension and, when answered, runs ChanSpy on
the caller's channel (`ami.listen_in`: listen only, the caller hears nothing), through one
long-lived AMI connection (`ami_client.Ami`) in the backend app's cleanup_ctx that reconnects by
itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from ami_client import Ami, AmiError, AmiUnavailable, listen_in
from backend.api import SETTINGS
from backend.settings import BackendSettings

log = structlog.get_logger(__name__)

ANSWER_TIMEOUT = 10.0  # seconds for AMI to answer the Originate
LOGIN_WAIT = 2.0  # seconds a request waits for a login under way
AMI: web.AppKey[Ami | None] = web.AppKey("console_ami", Ami)


class ListenInError(Exception):
    """Asterisk could not be asked, or refused: the message says which."""


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


async def ami_connection(app: web.Application) -> AsyncIterator[None]:
    """The AMI connection, when AMI is configured; it connects in the background, so the
    backend starts even while Asterisk is down."""
    config = app[SETTINGS]
    ami = None
    if config.ami_host and configured(config):
        ami = Ami(
            config.ami_host,
            config.ami_port,
            config.ami_username,
            config.ami_secret,
            timeout=ANSWER_TIMEOUT,
            reconnect_s=2,
        )
        await ami.start()
    app[AMI] = ami
    yield
    if ami is not None:
        await ami.close()


async def originate_chanspy(
    ami: Ami | None, config: BackendSettings, channel: str, extension: str
) -> None:
    """Ring `extension` (in the listen context) into ChanSpy of `channel`, with the app's
    `ami` connection (None when AMI is not configured)."""
    if ami is None:
        raise ListenInError("AMI is not configured")
    if not await ami.wait_ready(LOGIN_WAIT):  # just started or reconnecting: a moment
        raise ListenInError("not connected to Asterisk's AMI (or the AMI login was refused)")
    try:
        await listen_in(ami, channel, extension, config.listen_context)
    except AmiUnavailable as e:
        raise ListenInError(f"AMI did not answer ({e})") from None
    except AmiError as e:
        raise ListenInError(f"AMI answered: {e}") from None
    log.info("listen_in_originated", channel=channel, extension=extension)
