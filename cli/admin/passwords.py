"""Passwords given to `ivrs admin`: typed twice without echo, or read from standard input, so
they stay out of shell history and logs."""

from __future__ import annotations

import getpass
import sys


def ask_password(
    prompt: str = "New password (6-12 digits): ", otherwise: str = "--password"
) -> str:
    """A password typed twice without echo."""
    try:
        password = getpass.getpass(prompt)
        again = getpass.getpass("Again: ")
    except EOFError:
        raise ValueError(f"no password given ({otherwise}, or type it when asked)") from None
    if again != password:
        raise ValueError("the two passwords differ")
    return password


def stdin_password() -> str:
    """The first line of standard input."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ValueError("no password on standard input")
    return password
