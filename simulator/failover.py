"""Asterisk's `hagi://` failover, for simulated calls: `AGI(hagi://agi.example.com/ivrs)` looks
up the DNS SRV records of `_agi._tcp.agi.example.com` and tries their targets in turn.

What Asterisk does (res/res_agi.c, `launch_ha_netscript` and `launch_netscript`; main/srv.c):
- The targets come in SRV order: lowest priority first; within a priority, a weighted random
  draw for each pick (`srv_order` says how, quirk included).
- A target is given up, and the next tried, only when the TCP connection fails: refused,
  unreachable, or not connected within MAX_AGI_CONNECT (2000 ms); or when the first write to it
  (`agi_network: yes`) fails at once. Each of a target's addresses is tried likewise.
- Once a connection is made, that server has the call: if it then closes at once, misbehaves
  or fails mid-call, Asterisk does not try the next one (`AGI()` ends, AGISTATUS says how).
- If no target takes the connection, `AGI()` ends with AGISTATUS=FAILURE (the dialplan's
  fallback); a port in the URI (`hagi://host:4573/...`) disables the SRV lookup.
- `agi_request` in the header is the URI as written in the dialplan (`hagi://...`).

So a FastAGI server that shuts down must close its listening socket first (ivr/server.py does):
new calls are then refused and go to the next target, while its live calls finish.

    call = await place_call_hagi([SrvTarget("10.0.0.1", 4573, priority=10),
                                  SrvTarget("10.0.0.2", 4573, priority=20)], keys="3 ...")
    call.server, call.passed_over, call.record.prompt_ids
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .asterisk import SimulatedAsterisk
from .call_record import CallRecord

MAX_AGI_CONNECT_S = 2.0  # res_agi.c: MAX_AGI_CONNECT 2000 (ms)


@dataclass(frozen=True)
class SrvTarget:
    """One SRV record of `_agi._tcp.<name>`."""

    host: str
    port: int
    priority: int = 0
    weight: int = 0


@dataclass
class FailoverCall:
    record: CallRecord
    server: SrvTarget | None  # the target that took the call; None: none did (FAILURE)
    passed_over: list[SrvTarget] = field(default_factory=list)  # tried first, in vain


def srv_order(targets: Sequence[SrvTarget], rng: random.Random | None = None) -> list[SrvTarget]:
    """The order in which Asterisk tries the targets (main/srv.c), `targets` being the DNS
    answer's order: by priority, ties in answer order; when any record has a weight, each pick
    within a priority draws r in 1..(sum of the weights left) and takes the first record, in
    answer order, whose own weight is at least r (drawing again if none is). That is not quite
    RFC 2782, which compares r with the running sum, but it is what Asterisk does."""
    rng = rng or random.Random()
    by_priority = sorted(targets, key=lambda t: t.priority)  # stable: answer order kept
    if not any(t.weight for t in targets):
        return by_priority
    ordered: list[SrvTarget] = []
    for priority in sorted({t.priority for t in targets}):
        left = [t for t in by_priority if t.priority == priority]
        while left:
            total = sum(t.weight for t in left)
            if total == 0:
                ordered += left
                break
            draw = 1 + int(total * rng.random())
            chosen = next((t for t in left if t.weight >= draw), None)
            if chosen is not None:
                ordered.append(chosen)
                left.remove(chosen)
    return ordered


class _HagiAsterisk(SimulatedAsterisk):
    """The simulated channel, its `agi_request` the hagi URI as the dialplan wrote it."""

    def __init__(self, uri: str, **options: Any):
        super().__init__(**options)
        self.uri = uri

    def header(self, host: str, port: int, **options: Any) -> list[str]:
        return [
            f"agi_request: {self.uri}" if line.startswith("agi_request:") else line
            for line in super().header(host, port, **options)
        ]


async def place_call_hagi(
    targets: Sequence[SrvTarget],
    *,
    name: str = "agi.example.com",
    rng: random.Random | None = None,
    connect_timeout: float = MAX_AGI_CONNECT_S,
    **options: Any,
) -> FailoverCall:
    """Place a call as `AGI(hagi://<name>/<script>)` does, to the first target in SRV order
    that takes the connection. `options` are SimulatedAsterisk's (keys, totp, on_command...)."""
    script = options.get("script", "ivrs")
    asterisk = _HagiAsterisk(f"hagi://{name}/{script}", **options)
    passed_over = []
    for target in srv_order(targets, rng):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), connect_timeout
            )
        except (OSError, TimeoutError):
            passed_over.append(target)
            continue
        record = await asterisk.run(reader, writer, host=target.host, port=target.port)
        return FailoverCall(record, target, passed_over)
    asterisk.record.agi_status = "FAILURE"  # "Couldn't connect to any host. FastAGI failed."
    return FailoverCall(asterisk.record, None, passed_over)
