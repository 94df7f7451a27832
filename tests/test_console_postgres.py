# ruff: noqa: F401, F811  (fixtures and tests imported to run here on PostgreSQL)
"""The console's queries on PostgreSQL, the production database: the keyset paging (row value
comparisons on the (started_at, id) indexes), the filters, a call's page, the summary and the
audit of a playback run here as they do on SQLite in test_console.py."""

from __future__ import annotations

import pytest

from tests.console import backend_settings, console, supervisors
from tests.test_console import (
    test_calls_list_filters_and_pages_through_every_call_once,
    test_daily_summary_counts_calls_per_hour_outcomes_and_failed_logins,
    test_recording_is_served_in_ranges_and_each_playback_audited_once,
    test_session_ends_after_idle_time_after_its_lifetime_and_at_sign_out,
)


@pytest.fixture
def database() -> str:
    return "postgresql"
