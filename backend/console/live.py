"""Live calls: the calls the backend has open, joined by channel name to the channels Asterisk
has now (AMI CoreShowChannels, over the console's one AMI connection), and "listen in".

The two views disagree when a message was lost, and the page says where:
- a call open here that Asterisk no longer has ended there without the backend hearing of it
  (the hang-up handler's request did not arrive: "gone");
- a channel in the IVR's dialplan context that the backend has no call for (it missed the
  opening: "unknown"), or whose call it has closed already ("closed": a helpdesk transfer goes
  on after the IVR's part, as does the dialplan's fallback).
Without AMI (not configured, or Asterisk down) the page lists the table's calls alone and says
so in one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from aiohttp import web
from sqlalchemy import select

from ami_client import Ami, AmiError, AmiUnavailable
from backend import audit
from backend.console import listen
from backend.console.auth import allow, signed_in
from backend.console.pages import PREFIX, database, render, settings
from backend.database import Database
from backend.models import Call, CallEvent

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()

LIVE_WITHIN = timedelta(hours=1)  # an unended call older than this was lost, not live
MAX_SHOWN = 500
# dialplan/extensions.conf: every hotline call runs in [ivrs], from before AGI() to the
# helpdesk Dial(); other contexts hold other channels (a supervisor's phone listening in).
IVR_CONTEXT = "ivrs"
ASK_WAIT = 3.0  # seconds the page waits for Asterisk's list before showing the table alone
State = Literal["live", "gone", "unknown", "closed", "unchecked"]


@dataclass(frozen=True)
class LiveCall:
    """A call as the backend and Asterisk see it. call: the backend's row (None: none for this
    channel); channel: Asterisk's CoreShowChannel fields (None: Asterisk does not have it, or
    was not asked); state: how the two agree (the module's docstring)."""

    state: State
    call: Call | None
    channel: dict[str, str] | None = None
    # The newest step the backend itself recorded in the call (login_ok, bundle_submitted...):
    # the IVR's own stage events arrive with the call's end (docs/design.md, "Requests of a call").
    backend_step: str | None = None

    @property
    def stage(self) -> str:
        """What the page shows of how far the call has got."""
        if self.call is None:
            return "–"
        return self.call.last_stage or self.backend_step or "starting"

    def running_for(self, now: datetime) -> timedelta | None:
        """Asterisk's Duration of the channel (HH:MM:SS), else the time since it was opened."""
        hours, _, rest = (self.channel or {}).get("Duration", "").partition(":")
        minutes, _, seconds = rest.partition(":")
        if hours.isdigit() and minutes.isdigit() and seconds.isdigit():
            return timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds))
        return now - self.call.started_at if self.call else None


@dataclass(frozen=True)
class LiveCalls:
    calls: list[LiveCall]
    asterisk_missing: str | None  # why Asterisk's side is not shown; None: it is


async def live_calls(db: Database, ami: Ami | None) -> LiveCalls:
    """The calls open here (not ended, started within LIVE_WITHIN, newest first), each with
    its channel on Asterisk, then Asterisk's IVR channels that match none of them."""
    open_calls = await _open_calls(db)
    steps = await _backend_steps(db, [call.id for call in open_calls if not call.last_stage])
    channels, missing = await asterisk_channels(ami)
    if channels is None:
        unchecked = [LiveCall("unchecked", call, None, steps.get(call.id)) for call in open_calls]
        return LiveCalls(unchecked, missing)
    by_name = {channel.get("Channel", ""): channel for channel in channels}
    by_uniqueid = {channel.get("Uniqueid", ""): channel for channel in channels}
    joined: list[LiveCall] = []
    matched: set[str] = set()
    for call in open_calls:
        # By name; by Asterisk's UNIQUEID too, for a call opened without its channel's name.
        channel = by_name.get(call.channel or "") or by_uniqueid.get(call.uniqueid)
        if channel is None:
            joined.append(LiveCall("gone", call, None, steps.get(call.id)))
        else:
            matched.add(channel.get("Channel", ""))
            joined.append(LiveCall("live", call, channel, steps.get(call.id)))
    others = [
        channel
        for channel in channels
        if channel.get("Context") == IVR_CONTEXT and channel.get("Channel", "") not in matched
    ]
    known = await _calls_by_uniqueid(db, [channel.get("Uniqueid", "") for channel in others])
    for channel in others:
        found = known.get(channel.get("Uniqueid", ""))
        if found is None:
            joined.append(LiveCall("unknown", None, channel))
        else:  # closed here, or open but older than LIVE_WITHIN
            joined.append(LiveCall("closed" if found.ended_at else "live", found, channel))
    return LiveCalls(joined, None)


async def asterisk_channels(ami: Ami | None) -> tuple[list[dict[str, str]] | None, str | None]:
    """Asterisk's channels now, or None and why not (for the page's one line)."""
    if ami is None:
        return None, "AMI is not configured: IVRS_AMI_HOST, IVRS_AMI_USERNAME, IVRS_AMI_SECRET"
    try:
        async with asyncio.timeout(ASK_WAIT):
            return await ami.live_channels(), None
    except (AmiUnavailable, TimeoutError):
        reason = "not connected to Asterisk's AMI, or it did not answer"
    except AmiError as e:  # the AMI user may not run CoreShowChannels (write: reporting)
        reason = f"Asterisk refused to list its channels: {e}"
    log.warning("live_channels_unavailable", reason=reason)
    return None, reason


async def _open_calls(db: Database) -> list[Call]:
    since = db.now() - LIVE_WITHIN
    async with db.sessions() as session:
        return list(
            await session.scalars(
                select(Call)
                .where(Call.started_at >= since, Call.ended_at.is_(None))
                .order_by(Call.started_at.desc(), Call.id.desc())
                .limit(MAX_SHOWN)
            )
        )


async def _backend_steps(db: Database, call_ids: list[int]) -> dict[int, str]:
    """Each call's newest backend event (one query; a live call has a few)."""
    if not call_ids:
        return {}
    async with db.sessions() as session:
        rows = await session.execute(
            select(CallEvent.call_id, CallEvent.name)
            .where(CallEvent.call_id.in_(call_ids), CallEvent.kind == "backend")
            .order_by(CallEvent.at, CallEvent.id)
        )
        return {call_id: name for call_id, name in rows}  # the newest last, so it stays


async def _calls_by_uniqueid(db: Database, uniqueids: Iterable[str]) -> dict[str, Call]:
    wanted = [uniqueid for uniqueid in uniqueids if uniqueid][:MAX_SHOWN]
    if not wanted:
        return {}
    async with db.sessions() as session:
        found = await session.scalars(select(Call).where(Call.uniqueid.in_(wanted)))
        return {call.uniqueid: call for call in found}


@routes.get(f"{PREFIX}/live")
@allow("calls")
async def live_page(request: web.Request) -> web.Response:
    db = database(request)
    me = signed_in(request)
    config = settings(request)
    can_listen = me.may("listen") and listen.configured(config) and bool(me.extension)
    live = await live_calls(db, request.config_dict.get(listen.AMI))
    return render(
        request,
        "live.html",
        {
            "live": live,
            "now": db.now(),
            "can_listen": can_listen,
            "listen_missing": listen.missing(config, me.extension) if me.may("listen") else [],
            "notice": LISTEN_NOTICES.get(request.query.get("notice", "")),
        },
    )


LISTEN_NOTICES = {
    "ringing": "Your phone is ringing: answer it to listen in (quietly, the caller hears nothing).",
    "ended": "That call has ended.",
}


@routes.post(PREFIX + r"/live/{call_id:\d{1,18}}/listen")
@allow("listen")
async def listen_in(request: web.Request) -> web.StreamResponse:
    """Ask Asterisk (AMI Originate) to ring the supervisor's extension into ChanSpy of the
    call's channel; audited before it is asked, whatever Asterisk answers."""
    me = signed_in(request)
    config = settings(request)
    if not listen.configured(config) or not me.extension:
        raise web.HTTPConflict(text="Listening in needs AMI settings and your extension.")
    db = database(request)
    call_id = int(request.match_info["call_id"])
    async with db.sessions() as session:
        call = await session.get(Call, call_id)
    if call is None:
        raise web.HTTPNotFound(text="There is no call with that number.")
    if call.ended_at is not None or not call.channel:
        raise web.HTTPFound(f"{PREFIX}/live?notice=ended")
    await audit.write(
        db,
        me.actor,
        "listen_in",
        f"call:{call.id}",
        {"channel": call.channel, "extension": me.extension},
        source=request.remote,
    )
    ami = request.config_dict.get(listen.AMI)
    try:
        # Only a call the live page offers: open here and live on Asterisk now, and spied on
        # by the name Asterisk gives its channel (not what was stored).
        live = await live_calls(db, ami)
        if live.asterisk_missing:
            raise listen.ListenInError(live.asterisk_missing)
        offered = [e for e in live.calls if e.state == "live" and e.call and e.call.id == call_id]
        if not offered or not offered[0].channel:
            raise web.HTTPFound(f"{PREFIX}/live?notice=ended")
        channel = offered[0].channel.get("Channel", "")
        await listen.originate_chanspy(ami, config, channel, me.extension)
    except listen.ListenInError as e:
        log.warning("listen_in_failed", call_id=call.id, reason=str(e))
        raise web.HTTPBadGateway(text=f"Asterisk did not start the listening call: {e}") from None
    raise web.HTTPFound(f"{PREFIX}/live?notice=ringing")


__all__ = ["LiveCall", "LiveCalls", "asterisk_channels", "live_calls", "routes"]
