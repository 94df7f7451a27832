"""`ivrs demo` (what `make demo` runs after building the prompts): its key script follows the
call flow to a stored bundle, so a change to the flow that breaks the demo fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_demo_call_bundles_two_ccrns_and_exits_cleanly(tmp_path: Path) -> None:
    ivrs = Path(sys.executable).with_name("ivrs")
    done = subprocess.run(
        [str(ivrs), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Bundle stored in the backend:" in done.stdout
    assert "vehicle            AB1234" in done.stdout
    assert "Bundled 2 CCRNs to vehicle AB1234" in done.stdout
    assert "Traceback" not in done.stderr
