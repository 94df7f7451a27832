"""The FastAGI server's AMI connection (the shared `ami_client.Ami`), made from its settings:
one for the whole process, used to mute a call's recording while a secret is keyed
(ivr/recording_mute.py).
"""

from __future__ import annotations

from ami_client import Ami
from ivr.settings import IvrSettings

# Ami is re-exported for the modules that import it from here (ivr/call.py, ivr/server.py).
__all__ = ["Ami", "ami_from_settings"]


def ami_from_settings(settings: IvrSettings) -> Ami | None:
    """The connection IVRS_AMI_* describe, not started; None when IVRS_AMI_HOST is not set."""
    if not settings.ami_host:
        return None
    return Ami(
        settings.ami_host,
        settings.ami_port,
        settings.ami_username,
        settings.ami_secret,
        timeout=settings.ami_timeout,
    )
