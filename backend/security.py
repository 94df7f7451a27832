"""Password hashes (Argon2), token seeds encrypted at rest (Fernet), and SMS codes kept only
as keyed hashes (HMAC-SHA256)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY
from cryptography.fernet import Fernet


def password_hasher(profile: str) -> PasswordHasher:
    """RFC 9106's recommended parameters for memory-constrained hosts, or a cheap test profile."""
    if profile == "rfc9106":
        return PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
    if profile == "test":
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    raise ValueError(f"unknown Argon2 profile: {profile!r}")


class Passwords:
    """Argon2 work runs in a thread: a hash takes tens of milliseconds of CPU by design, and the
    event loop serves every other call meanwhile."""

    def __init__(self, profile: str) -> None:
        self._hasher = password_hasher(profile)
        self._decoy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches. With no hash (unknown account) a decoy hash is checked,
        so an unknown account takes as long to refuse as a wrong password."""
        if password_hash is None:
            if self._decoy_hash is None:
                self._decoy_hash = await self.hash(secrets.token_hex(16))
            password_hash = self._decoy_hash
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True after the Argon2 profile changed: the next good login stores a new hash."""
        return self._hasher.check_needs_rehash(password_hash)


# Migrated hashes are kept as they are only in the password-hashing variants of Argon2;
# argon2d resists GPUs but leaks through side channels, so it is not accepted for passwords.
MIGRATABLE_ARGON2 = (Type.ID, Type.I)
# A hash whose check would take far more work than ours is refused at import, not tried at
# every login (a planted costly hash would be a denial of service).
MAX_ARGON2_MEMORY_KIB = 1024 * 1024
MAX_ARGON2_TIME_COST = 16
MAX_ARGON2_PARALLELISM = 16


def is_argon2_hash(text: str) -> bool:
    """True for a well-formed Argon2id or Argon2i hash (PHC string), as an account import may
    bring it; its parameters may differ from ours (the next good login re-hashes it)."""
    if not text.startswith("$argon2"):
        return False
    try:
        parameters = extract_parameters(text)
    except (InvalidHashError, ValueError):
        return False
    return (
        parameters.type in MIGRATABLE_ARGON2
        and parameters.memory_cost <= MAX_ARGON2_MEMORY_KIB
        and parameters.time_cost <= MAX_ARGON2_TIME_COST
        and parameters.parallelism <= MAX_ARGON2_PARALLELISM
    )


class SeedCipher:
    """Token seeds are stored as Fernet tokens; the key lives outside the database."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, seed_base32: str) -> str:
        return self._fernet.encrypt(seed_base32.encode()).decode()

    def decrypt(self, seed_encrypted: str) -> str:
        return self._fernet.decrypt(seed_encrypted.encode()).decode()


SMS_CODE_DIGITS = 6


class SmsCodes:
    """New SMS codes, and the HMAC-SHA256 by which they are stored and checked.

    The HMAC key is derived from the secret key, which lives outside the database: a copy of the
    database alone does not let anyone try the million codes offline. The hash binds the code to
    its account and mobile number, so a code can never register another number.
    """

    def __init__(self, secret_key: bytes) -> None:
        self._key = hmac.new(secret_key, b"ivrs sms code v1", hashlib.sha256).digest()

    @staticmethod
    def new() -> str:
        return f"{secrets.randbelow(10**SMS_CODE_DIGITS):0{SMS_CODE_DIGITS}d}"

    def hash(self, account: str, mobile: str, code: str) -> str:
        message = f"{account}\x00{mobile}\x00{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def matches(self, code_hash: str, account: str, mobile: str, code: str) -> bool:
        """Constant time, like every secret comparison here."""
        return hmac.compare_digest(code_hash, self.hash(account, mobile, code))
