"""The HTTP API fuzzed against its description, `backend/openapi.yaml`, with Schemathesis.

The real backend (conftest: HTTP on loopback) runs on SQLite and on PostgreSQL; Schemathesis's
own command line (`st run`, as a developer would run it) sends it requests generated from the
description: its examples, boundary values and schema-breaking variants (coverage), random
valid and invalid requests (fuzzing), and sequences following the inferred links (stateful).
Every response must conform: no server error, a documented status, content type, headers and
body, invalid requests refused with a 4xx, the API token enforced.

Not checked: `positive_data_acceptance` (a request the schema allows must succeed). The API's
rules go beyond what a JSON Schema can say (check digits, the Hong Kong numbering plan, the
current terms version, known accounts): such requests are refused with a documented 4xx.

Realistic values (a seeded account, its vehicle, CCRNs and a batch) are mixed into half the
generated requests, so they reach the logic behind "unknown account" too, and so are TRICKY
ones, as a fuzzer's dictionary would: inputs that broke the backend before (a NUL, which
PostgreSQL text cannot hold; digits that are not ASCII, which str.isdigit takes). The
generation is seeded (SEED) and bounded (MAX_EXAMPLES per operation and phase), to keep each
run near 30 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest

import backend
from backend import admin
from backend.app import RunningBackend
from backend.database import Database
from tests.support.databases import DATABASES
from tests.support.truckers import MakeTrucker

pytestmark = pytest.mark.slow  # thousands of generated requests, on both databases (~30 s each)

SPEC = Path(backend.__file__).with_name("openapi.yaml")
SEED = 20261123
MAX_EXAMPLES = 12
RUN_TIMEOUT = 240  # seconds; a run takes about 30
# Digits that are not ASCII (superscript, fullwidth, mathematical) and NUL characters.
TRICKY = [
    "1234567\u00b2",
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
    "\u0000",
    "12\u00003",
]
TRICKY_MOBILES = ["9123456\u00b2", "\uff19\uff11\uff12\uff13\uff14\uff15\uff16\uff17"]


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def schemathesis_config(
    token: str, accounts: list[str], numbers: list[str], marks: list[str]
) -> str:
    """schemathesis.toml: the API token, and the seeded and tricky values as dictionaries that
    half the generated values of each matching parameter are drawn from."""

    def values(items: list[str]) -> str:
        # A TOML array of strings (JSON's escapes are TOML's; TOML takes other text as it is).
        return json.dumps([*items, *TRICKY], ensure_ascii=False)

    return f"""
headers = {{ Authorization = "Bearer {token}" }}

[dictionaries.accounts]
values = {values(accounts)}

[dictionaries.numbers]
values = {values(numbers)}

[dictionaries.marks]
values = {values(marks)}

[dictionaries.mobiles]
values = {values(["91234567", *TRICKY_MOBILES])}

[parameters]
"query.account" = {{ dictionary = "accounts", probability = 0.5 }}
"body.account" = {{ dictionary = "accounts", probability = 0.5 }}
"body.numbers[*]" = {{ dictionary = "numbers", probability = 0.5 }}
"body.ccrn" = {{ dictionary = "numbers", probability = 0.5 }}
"body.vehicle_mark" = {{ dictionary = "marks", probability = 0.5 }}
"query.vehicle_mark" = {{ dictionary = "marks", probability = 0.5 }}
"body.mobile" = {{ dictionary = "mobiles", probability = 0.5 }}
"body.uniqueid" = {{ dictionary = "accounts", probability = 0.2 }}

[[operations]]
include-path-regex = "^/v1/accounts/"
parameters = {{ "path.number" = {{ dictionary = "accounts", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/v1/cargo/"
parameters = {{ "path.number" = {{ dictionary = "numbers", probability = 0.5 }} }}
"""


async def test_every_generated_request_is_answered_as_the_openapi_description_says(
    backend: RunningBackend, db: Database, make_trucker: MakeTrucker, tmp_path: Path
) -> None:
    trucker = await make_trucker(cargo=4)
    await admin.add_vehicle(db, trucker.vehicle)
    batch = await admin.combine_batch(db, trucker.ccrns[2:])
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        schemathesis_config(
            backend.settings.api_token,
            accounts=[trucker.account],
            numbers=[*trucker.ccrns[:2], batch],
            marks=[trucker.vehicle],
        )
    )
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        str(SPEC),
        "--url",
        backend.url,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its reports and cache stay in the test's directory
    )
    output, _ = await asyncio.wait_for(run.communicate(), RUN_TIMEOUT)
    report = output.decode(errors="replace")
    assert run.returncode == 0, report[-8000:]
    # "1000 generated" is not "0 generated": only a count that is zero itself.
    assert not re.search(r"(?<!\d)0 generated", report) and " passed" in report, report[-2000:]
