"""Structured logs for every `ivrs` process: JSON lines by default (for log shippers), readable
console lines with IVRS_LOG_FORMAT=console. Level from IVRS_LOG_LEVEL (default info)."""

from __future__ import annotations

import logging
import os
import sys

import structlog

# Every process's chain before the renderer (the secrets canary test logs through it too).
PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    level_name = (level or os.environ.get("IVRS_LOG_LEVEL", "info")).upper()
    fmt = fmt or os.environ.get("IVRS_LOG_FORMAT", "json")
    renderer = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*PROCESSORS, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiosqlite logs every SQL parameter at DEBUG (hashes, phone numbers), whatever SQLAlchemy's
    # hide_parameters says: keep it quiet.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    # Alembic's INFO lines (plugins set up, the SQLite DDL mode) say nothing to an operator.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiohttp's access lines (one a request, Apache's format, not JSON): at debug only.
    access = logging.DEBUG if level_name == "DEBUG" else logging.WARNING
    logging.getLogger("aiohttp.access").setLevel(access)
    logging.basicConfig(
        level=getattr(logging, level_name, logging.INFO), stream=sys.stderr, force=True
    )
