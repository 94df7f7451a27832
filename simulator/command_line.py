"""An AGI command line as res_agi.c reads it: split into words (parse_args), matched to a
command (find_command) of the table of those simulated, and numbers read as sscanf does."""

from __future__ import annotations

import re
from collections.abc import Sequence

# The commands simulated, and whether each runs on a dead channel (res_agi.c's table; 07 saw
# VERBOSE, SET/GET (FULL) VARIABLE, NOOP, DATABASE and EXEC answer 200 after a hang-up).
COMMANDS: dict[tuple[str, ...], bool] = {
    ("answer",): False,
    ("channel", "status"): False,
    ("database", "del"): True,
    ("database", "deltree"): True,
    ("database", "get"): True,
    ("database", "put"): True,
    ("exec",): True,
    ("get", "data"): False,
    ("get", "full", "variable"): True,
    ("get", "variable"): True,
    ("hangup",): False,
    ("noop",): True,
    ("say", "alpha"): False,
    ("say", "datetime"): False,
    ("say", "digits"): False,
    ("say", "number"): False,
    ("say", "time"): False,
    ("set", "variable"): True,
    ("stream", "file"): False,
    ("verbose",): True,
    ("wait", "for", "digit"): False,
}
PLAYS_FILE = (("stream", "file"), ("get", "data"))


class ShowUsage(Exception):
    """The arguments are wrong: Asterisk answers 520."""


def parse_args(line: str) -> list[str]:
    """Split a command line as res_agi.c's parse_args does: double quotes group (an empty pair
    is an empty argument), a backslash escapes the next character, only space and tab separate
    (so a trailing carriage return stays part of the last word, as in Asterisk)."""
    argv: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and word is None:
                word = []
        elif char in " \t" and not quoted and not escaped:
            if word is not None:
                argv.append("".join(word))
                word = None
        elif char == "\\" and not escaped:
            escaped = True
        else:
            word = [*(word or []), char]
            escaped = False
    if word is not None:
        argv.append("".join(word))
    return argv


def find_command(argv: Sequence[str]) -> tuple[str, ...] | None:
    """The command whose words start the line, compared case-insensitively (06: `answer`)."""
    for words in COMMANDS:
        if len(argv) >= len(words) and all(
            arg.lower() == word for arg, word in zip(argv, words, strict=False)
        ):
            return words
    return None


def scan_int(text: str) -> int | None:
    """sscanf("%d"): leading blanks, a sign and digits; the rest is ignored."""
    match = re.match(r"\s*([-+]?\d+)", text)
    return int(match[1]) if match else None


def atoi(text: str) -> int:
    value = scan_int(text)
    return 0 if value is None else value
