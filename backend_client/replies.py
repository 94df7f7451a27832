"""What the backend answers, as the IVR sees it: typed results, and the two kinds of error the
call flow treats differently (`BackendError`: a refusal it maps to a prompt;
`BackendUnavailable`: no answer, the caller hears `error.service_unavailable`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class BackendUnavailable(Exception):
    """The backend could not be reached, timed out, or failed (5xx)."""


class CircuitOpen(BackendUnavailable):
    """Not even tried: the backend failed too often lately (breaker.py)."""


class BackendError(Exception):
    """The backend refused the request with an error code the IVR maps to a prompt."""

    def __init__(self, status: int, code: str, message: str = "", detail: Any = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.detail = detail or {}


@dataclass(frozen=True)
class AccountInfo:
    number: str
    type: str
    needs_activation: bool
    mobile: str | None
    mobile_registered: bool = True
    terms_accepted: bool = True


@dataclass(frozen=True)
class ServiceStatus:
    suspended: bool
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class CallOpened:
    """The call log opened, with what the call's first prompts need."""

    call_id: int
    language: str | None  # the caller number's last language (None: not known)
    service: ServiceStatus

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallOpened:
        status = data.get("service") or {}
        start, end = status.get("from"), status.get("until")
        return cls(
            int(data["call_id"]),
            data.get("language"),
            ServiceStatus(
                bool(status.get("suspended", False)),
                datetime.fromisoformat(start) if start else None,
                datetime.fromisoformat(end) if end else None,
            ),
        )


@dataclass(frozen=True)
class CargoCheck:
    number: str
    kind: str  # "ccrn" | "batch"
    ccrns: list[str]


@dataclass(frozen=True)
class Bundle:
    reference: str
    vehicle_mark: str
    ccrns: list[str]
    created_at: datetime
    earliest_crossing: datetime
    status: str = "active"
    account: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bundle:
        return cls(
            reference=data["reference"],
            vehicle_mark=data["vehicle_mark"],
            ccrns=list(data["ccrns"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            earliest_crossing=datetime.fromisoformat(data["earliest_crossing"]),
            status=data.get("status", "active"),
            account=data.get("account"),
        )
