"""The IVR's only way to the backend: an aiohttp client with typed results and errors.

Errors come in two kinds the call flow treats differently:
- `BackendError`: the backend answered with an error code (`login_failed`, `ccrn_taken`, ...)
  that the flow maps to a prompt;
- `BackendUnavailable`: no answer, a timeout or a server error; the caller hears
  `error.service_unavailable`.
Only safe requests are retried (GETs, and bundles, which carry an idempotency key). Every
request has a timeout, and a circuit breaker (breaker.py) makes them fail at once while the
backend is known to be down.
"""

from backend_client.client import BackendClient
from backend_client.replies import (
    AccountInfo,
    BackendError,
    BackendUnavailable,
    Bundle,
    CallOpened,
    CargoCheck,
    CircuitOpen,
    ServiceStatus,
)

__all__ = [
    "AccountInfo",
    "BackendClient",
    "BackendError",
    "BackendUnavailable",
    "Bundle",
    "CallOpened",
    "CargoCheck",
    "CircuitOpen",
    "ServiceStatus",
]
