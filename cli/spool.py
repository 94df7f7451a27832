"""`ivrs spool deliver`: send the backend the call logs that classic AGI processes left in
their spools (`IVRS_SPOOL_DIR/classic-<uniqueid>/`) when it could not take them. A running
`ivrs agi` does this by itself every minute; where only classic AGI runs, run this from a
timer (docs/deploying-on-asterisk.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from backend_client import BackendClient, BackendUnavailable
from backend_client.call_log import deliver_left_spools
from cli.main import ivr_settings


async def deliver_left() -> int:
    settings = ivr_settings("spool")
    async with BackendClient(
        settings.backend_url, settings.api_token, settings.backend_timeout
    ) as client:
        try:
            delivered = await deliver_left_spools(client, Path(settings.spool_dir))
        except BackendUnavailable as e:
            print(f"the backend did not answer ({e}): the rest waits", file=sys.stderr)
            return 1
    print(f"classic AGI call logs delivered: {delivered} call(s)")
    return 0
