"""The caller's fingers: the key script of docs/design.md ("simulator keys") and who gets
which keys.

A script is whitespace-separated tokens, used in order:
    12345678#   keys typed while the next reading command (WAIT FOR DIGIT, GET DATA) runs
    ^5 ^123#    typed during the next prompt (STREAM FILE, SAY, GET DATA's prompt): a barge-in
    .           no input: the next reading command times out
    !  12!  ^!  hang up (during the reading command, after typing 1 2, during the next prompt)
    ~           hang up between commands, right after the previous reply
    {totp}#     `{totp}` becomes the current token code when the token is first used
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

KEYS = "0123456789*#"
TOTP = "{totp}"
_TOKEN = re.compile(r"(\^?)((?:[0-9*#]|\{totp\})*)(!?)")

Ask = Callable[[], Awaitable[list["KeyToken"]]]


class KeyScriptError(ValueError):
    """A key script that does not follow the grammar."""


@dataclass(frozen=True)
class KeyToken:
    text: str  # as written
    keys: str = ""  # may hold {totp}
    barge_in: bool = False  # ^
    hangup: bool = False  # ! (alone, or after the keys)
    between: bool = False  # ~


@dataclass(frozen=True)
class BargeIn:
    """What the caller does during a prompt: presses `key`, or hangs up (`key` None)."""

    key: str | None


def parse_keys(script: str) -> list[KeyToken]:
    return [_parse_token(text) for text in script.split()]


def _parse_token(text: str) -> KeyToken:
    if text == ".":
        return KeyToken(text)
    if text == "~":
        return KeyToken(text, between=True)
    match = _TOKEN.fullmatch(text)
    if match is None:
        raise KeyScriptError(f"key token {text!r}: {_fault(text)}")
    barge, keys, hangup = match.groups()
    if not keys and not hangup:
        raise KeyScriptError(f"key token {text!r}: '^' needs keys or '!' after it")
    return KeyToken(text, keys, barge_in=bool(barge), hangup=bool(hangup))


def _fault(text: str) -> str:
    """Why a token does not parse, naming the first character at fault."""
    i = 1 if text.startswith("^") else 0
    while i < len(text):
        if text.startswith(TOTP, i):
            i += len(TOTP)
            continue
        char = text[i]
        if char in KEYS or (char == "!" and i == len(text) - 1):
            i += 1
            continue
        if char == "!":
            return f"'!' at position {i + 1} must end the token"
        if char == "^":
            return f"'^' at position {i + 1} must start the token"
        if char in ".~":
            return f"'{char}' must stand alone"
        if char == "{":
            return f"unknown placeholder at position {i + 1}; the only one is {TOTP}"
        return f"bad character {char!r} at position {i + 1}; allowed: 0-9 * # and ^ . ! ~ {TOTP}"
    return "not a key token"


class Keypad:
    """Hands the script's tokens to the commands that play (barge-in) and read (typing).

    One token is "in use" at a time: its keys go to reading commands one after another until
    they run out; only then does the next token come up (tokens are used strictly in order).
    """

    def __init__(
        self,
        tokens: Iterable[KeyToken],
        *,
        totp: Callable[[], str] | None = None,
        ask: Ask | None = None,
    ):
        self._tokens = deque(tokens)
        self._typing = ""  # keys of the token in use, not read yet
        self._hangup = False  # the token in use ends with "!"
        self._totp = totp
        self._ask = ask
        if totp is None and any(TOTP in token.keys for token in self._tokens):
            raise KeyScriptError(f"the key script uses {TOTP} but no token code source was given")

    @property
    def exhausted(self) -> bool:
        """The script is used up (never in interactive mode): the caller stays silent."""
        return self._ask is None and not (self._tokens or self._typing or self._hangup)

    @property
    def typing(self) -> str:
        """Keys of the token in use that no command has read yet."""
        return self._typing

    def _next(self, want: Callable[[KeyToken], bool]) -> KeyToken | None:
        if self._typing or self._hangup or not self._tokens or not want(self._tokens[0]):
            return None
        return self._tokens.popleft()

    def take_between(self) -> bool:
        """True when the caller hangs up now, between commands (a `~` is next)."""
        return self._next(lambda token: token.between) is not None

    def take_barge_in(self) -> BargeIn | None:
        """For a command that plays something: the `^` token typed during it, if it is next."""
        token = self._next(lambda token: token.barge_in)
        if token is None:
            return None
        keys = self._use(token)
        if not keys:  # ^!
            self._hangup = False
            return BargeIn(None)
        self._typing = keys[1:]
        return BargeIn(keys[0])

    async def begin_reading(self) -> str:
        """At the start of a reading command: the keys the caller types during it ("" silent)."""
        if not (self._typing or self._hangup):
            if not self._tokens and self._ask is not None:
                self._tokens.extend(await self._ask())
            token = self._next(lambda token: not (token.barge_in or token.between))
            if token is not None:
                self._typing = self._use(token)
        return self._typing

    def read(self, count: int) -> None:
        self._typing = self._typing[count:]

    def take_hangup(self) -> bool:
        """When the keys ran out during a reading command: does the caller hang up now?"""
        if self._typing or not self._hangup:
            return False
        self._hangup = False
        return True

    def _use(self, token: KeyToken) -> str:
        self._hangup = token.hangup
        if TOTP in token.keys:
            assert self._totp is not None
            return token.keys.replace(TOTP, self._totp())  # the code current at first use
        return token.keys


async def ask_stdin() -> list[KeyToken]:
    """Interactive mode: ask the person at the keyboard, off the event loop."""

    def ask() -> list[KeyToken]:
        while True:
            print("keys> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:  # end of input: put the phone down
                return parse_keys("!")
            try:
                return parse_keys(line) or parse_keys(".")
            except KeyScriptError as error:
                print(error, file=sys.stderr)

    return await asyncio.to_thread(ask)
