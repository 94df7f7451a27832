"""Backend error codes and the prompts that explain them to the caller (docs/call-flow.md)."""

from __future__ import annotations

from backend_client import BackendError, BackendUnavailable

# Backend error codes -> the prompt that explains them (one table, docs/call-flow.md).
ERROR_PROMPTS = {
    "login_failed": "login.failed",
    "caller_throttled": "login.throttled",
    "locked": "login.locked",
    "token_expired": "login.token_expired",
    "no_service": "login.no_service",
    "ccrn_unknown": "bundle.ccrn_unknown",
    "ccrn_taken": "bundle.ccrn_taken",
    "ccrn_expired": "bundle.ccrn_expired",
    "invalid_request": "bundle.ccrn_invalid",
    "bundle_not_found": "unbundle.not_found",
    "mobile_invalid": "register.mobile_invalid",
    "sms_code_wrong": "register.sms_code_wrong",
    "sms_not_sent": "register.sms_failed",
}


def prompt_for(error: BackendError) -> str:
    """The prompt for a backend error code; an unknown code is a fault of the service."""
    try:
        return ERROR_PROMPTS[error.code]
    except KeyError:
        raise BackendUnavailable(f"unexpected backend error {error.code}") from error
