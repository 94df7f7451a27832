"""Token seed files as vendors ship them: the OATH CSV (seed_csv.py) and PSKC (RFC 6030, pskc.py).

The CSV (docs/design.md, "seed file") has the header `serial,key,type,digits,period,expiry`:

    serial,key,type,digits,period,expiry
    FTK200000001,3132333435363738393031323334353637383930,totp,6,60,2029-04-30
    FTK200000002,base32:GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,totp,6,60,

- `key`: the seed in hex, or `base32:` and the seed in base32; 128 to 512 bits (RFC 4226 asks
  for at least 128).
- `type`: `totp` or `hotp`; `digits`: 6 or 8; `period`: 30 or 60 seconds (empty for hotp);
  `expiry`: `YYYY-MM-DD` (the last day the token may be used) or empty.

PSKC files are read with their secrets plain, or encrypted (AES-CBC, with an HMAC-SHA1/256 MAC)
under a pre-shared key (RFC 6030, 6.1) or under a key derived from a password with PBKDF2
(6.2); asymmetric encryption is refused.

A file is read whole or not at all: every problem is reported with its line (CSV) or key
package (PSKC), and never with the key itself, so an error message can go to a terminal or a
ticket without spreading a seed.
"""

from __future__ import annotations

from otp.pskc import read_pskc
from otp.seed_csv import CSV_HEADER, read_seed_csv
from otp.seed_records import SeedFileError, SeedRecord

__all__ = [
    "CSV_HEADER",
    "SeedFileError",
    "SeedRecord",
    "read_pskc",
    "read_seed_csv",
    "read_seed_file",
]


def read_seed_file(
    data: bytes, psk: bytes | None = None, password: str | None = None
) -> list[SeedRecord]:
    """A CSV or PSKC seed file (told apart by its content); `psk` (a pre-shared key) or
    `password` (PBKDF2) decrypts PSKC secrets."""
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return read_pskc(data, psk, password)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SeedFileError(["the file is neither UTF-8 CSV nor PSKC XML"]) from None
    return read_seed_csv(text)
