"""Administration: accounts, tokens, vehicles, lodged cargo and batches, one module each.

Used by `ivrs admin`, the console, the demo and tests (as `admin.create_account`, ...). Each
function is one unit of work (one transaction) and raises `AdminError` with a message fit for a
terminal when the input is wrong. Given `by` (who asks), a change writes its audit entry in that
same transaction.

Imports (token seed files, ROCARS accounts) are all or nothing: every row is checked first,
each problem reported with its line, and nothing is written unless every row is good. No
message ever quotes a seed or a password.
"""

from backend.admin.account_import import import_accounts
from backend.admin.accounts import create_account, lock, release_caller, reset_password, unlock
from backend.admin.cargo import combine_batch, lodge_cargo
from backend.admin.common import AdminError
from backend.admin.enrolment import MobileEnrolment, enrol_mobile_token
from backend.admin.token_import import import_tokens
from backend.admin.tokens import add_token, assign_token, resync_token, revoke_token
from backend.admin.vehicles import add_vehicle

__all__ = [
    "AdminError",
    "MobileEnrolment",
    "add_token",
    "add_vehicle",
    "assign_token",
    "combine_batch",
    "create_account",
    "enrol_mobile_token",
    "import_accounts",
    "import_tokens",
    "lock",
    "lodge_cargo",
    "release_caller",
    "reset_password",
    "resync_token",
    "revoke_token",
    "unlock",
]
