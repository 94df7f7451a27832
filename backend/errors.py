"""Error codes of the API, each with its HTTP status, in one place.

The IVR maps the codes to prompts (docs/call-flow.md); the statuses follow HTTP's meaning.
"""

from __future__ import annotations

from typing import Any

STATUS_BY_CODE = {
    "invalid_request": 422,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "login_failed": 401,
    # Too many failed logins from this caller number: about the number, never the account.
    "caller_throttled": 429,
    "session_required": 401,
    "locked": 403,
    "token_expired": 403,
    "no_service": 403,
    "account_unknown": 404,
    "call_unknown": 404,
    "ccrn_unknown": 404,
    "ccrn_taken": 409,
    "ccrn_expired": 410,
    "bundle_not_found": 404,
    "mobile_invalid": 422,
    "sms_code_limit": 429,
    "sms_code_wrong": 401,
    # The SMS provider refused the message or was down: a 5xx would read as the backend down.
    "sms_not_sent": 424,
    "no_pending_mobile": 404,
    "terms_not_current": 422,
    "internal": 500,
}


class BackendError(Exception):
    """A refusal the caller (the IVR) can act on; rendered as `{"error": {...}}`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        detail: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status or STATUS_BY_CODE[code]

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"error": error}
