"""FortiToken Mobile (and any authenticator app) enrolment: the `otpauth://` URI and its QR code.

The URI follows the Key URI format that authenticator apps read:

    otpauth://totp/Road%20Cargo%20IVRS:12345678?secret=...&issuer=Road%20Cargo%20IVRS
        &algorithm=SHA1&digits=6&period=30

Digits, period and algorithm are always written, so an app that assumes other defaults still
computes the codes the server expects. The URI holds the seed: show it once, to the person
enrolling, and never log it. QR codes are made with `segno` (pure Python): text for a terminal
and PNG bytes for a file.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote, urlencode

from otp import TokenProfile

__all__ = ["ISSUER", "provisioning_uri", "qr_png", "qr_terminal"]

ISSUER = "Road Cargo IVRS"


def provisioning_uri(
    seed_base32: str, profile: TokenProfile, account: str, issuer: str = ISSUER
) -> str:
    """The otpauth URI an authenticator app scans: label "issuer:account", the seed in base32."""
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    query = urlencode(
        {
            "secret": seed_base32.rstrip("="),
            "issuer": issuer,
            "algorithm": profile.algorithm.upper(),
            "digits": profile.digits,
            "period": profile.period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def qr_terminal(uri: str) -> str:
    """The QR code as text: two modules a character (half blocks), light on dark, with the
    quiet zone, so it scans from a terminal with a dark background and fits 80 columns."""
    out = io.StringIO()
    _qr(uri).terminal(out, compact=True, border=4)
    return out.getvalue()


def qr_png(uri: str, scale: int = 8) -> bytes:
    """The QR code as a PNG image (black on white, 4-module quiet zone)."""
    out = io.BytesIO()
    _qr(uri).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def _qr(uri: str) -> Any:
    import segno  # only enrolment needs it: the login path never loads it

    # Error correction M (15%): survives a smudged screen, and a URI still fits version 7.
    return segno.make(uri, error="m", micro=False, boost_error=False)
