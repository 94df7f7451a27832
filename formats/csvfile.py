"""The import files' shape (seed files, ROCARS account exports): a CSV with a fixed header.

One reader, so every import reports problems the same way: each bad row by its line number,
all of them at once, and nothing imported unless every row is good.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import TypeVar

Row = TypeVar("Row")


def read_rows(
    text: str, header: tuple[str, ...], parse: Callable[[str, list[str]], Row], what: str
) -> tuple[list[Row], list[str]]:
    """The rows after `header` (case-insensitive), each parsed by `parse(where, cells)` (which
    raises ValueError on a bad row), and the problems found ("line N: ..."). Blank lines are
    skipped anywhere; a wrong header stops the reading at once. `what`: the rows' name, plural."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    rows: list[Row] = []
    problems: list[str] = []
    seen_header = False
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if not seen_header:
                if tuple(cell.lower() for cell in cells) != header:
                    return [], [f"{where}: the header must be {','.join(header)}"]
                seen_header = True
                continue
            try:
                rows.append(parse(where, cells))
            except ValueError as e:
                problems.append(f"{where}: {e}")
    except csv.Error as e:
        problems.append(f"line {reader.line_num}: not CSV ({e})")
    if not seen_header:
        problems.append(f"the file is empty: it needs the header {','.join(header)}")
    elif not rows and not problems:
        problems.append(f"the file has a header but no {what}")
    return rows, problems
