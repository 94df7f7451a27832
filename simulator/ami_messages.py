"""AMI messages as manager.c reads and writes them: headers up to an empty line, names
case-insensitive, a repeated header kept in order; and the fields of one CoreShowChannel."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from .asterisk import SimulatedAsterisk

EOL = "\r\n"


class Headers(dict[str, str]):
    """A message's headers by lower-case name (AMI names are case-insensitive); repeated
    headers (Variable) are kept in order too."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}
        self.repeated: dict[str, list[str]] = {}

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        self.names.setdefault(key, name)
        self.repeated.setdefault(key, []).append(value)
        self[key] = value if len(self.repeated[key]) == 1 else ", ".join(self.repeated[key])

    def all(self, name: str) -> list[str]:
        return self.repeated.get(name.lower(), [])

    def as_dict(self, leave_out: str) -> dict[str, Any]:
        """As received (header names as sent; a repeated header as a list), less one."""
        return {
            self.names[key]: values if len(values) > 1 else values[0]
            for key, values in self.repeated.items()
            if key != leave_out
        }


async def read_message(reader: asyncio.StreamReader) -> Headers | None:
    """Lines up to an empty one (manager.c get_input: only \\r\\n ends a line); None at EOF."""
    headers = Headers()
    while True:
        raw = await reader.readuntil(b"\r\n")
        line = raw[:-2].decode("utf-8", errors="replace")
        if not line:
            if headers:
                return headers
            continue  # blank lines between messages
        name, sep, value = line.partition(":")
        if sep:
            headers.add(name.strip(), value.strip())


def caller_number(caller_id: str) -> str | None:
    """`"Name" <number>` or a bare number."""
    match = re.search(r"<([^>]*)>", caller_id)
    return (match[1] if match else caller_id.strip()) or None


def channel_fields(call: SimulatedAsterisk) -> list[tuple[str, str]]:
    """One CoreShowChannel, with the fields Asterisk 22 sends (09)."""
    channel, record = call.channel, call.record
    seconds = channel.now_ms // 1000
    duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return [
        ("Channel", channel.name),
        ("ChannelState", "6" if channel.answered else "4"),
        ("ChannelStateDesc", "Up" if channel.answered else "Ring"),
        ("CallerIDNum", channel.caller_id or "<unknown>"),
        ("CallerIDName", channel.caller_name or "<unknown>"),
        ("ConnectedLineNum", "<unknown>"),
        ("ConnectedLineName", "<unknown>"),
        ("Language", record.language),
        ("AccountCode", ""),
        ("Context", channel.context),
        ("Exten", channel.extension),
        ("Priority", str(channel.priority)),
        ("Uniqueid", record.uniqueid),
        ("Linkedid", call.linkedid),
        ("Application", "AGI"),
        ("ApplicationData", ",".join([call.agi_request, *call.args])),
        ("Duration", duration),
        ("BridgeId", ""),
    ]
