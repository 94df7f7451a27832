"""`ivrs backend` for the real-Asterisk suite, its SMS written to a file the tests read.

The first call's SMS code is sent by a backend in another process than the test, so the test
reads it from where that process's sender puts it: one JSON line per message in the file named
by IVRS_TEST_SMS_OUTBOX. Everything else is `ivrs backend` as deployed (cli.main).

    IVRS_TEST_SMS_OUTBOX=/tmp/sms.jsonl python -m tests.asterisk.outbox_backend --port 8080
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import backend.app
from backend.sms import current_kind
from cli.main import main as ivrs


class FileSender:
    def __init__(self, path: Path):
        self.path = path

    async def send(self, mobile: str, text: str) -> None:
        line = json.dumps({"mobile": mobile, "text": text, "kind": current_kind()})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def main() -> int:
    outbox = Path(os.environ["IVRS_TEST_SMS_OUTBOX"])
    backend.app.sender_for = lambda *_: FileSender(outbox)  # create_app's default sender
    return ivrs(["backend", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
