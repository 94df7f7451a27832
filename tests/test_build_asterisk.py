"""scripts/build-asterisk.sh, the cases that need no build: no source, and a source that is not
the release (the real build runs in `make asterisk`, before pytest)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build-asterisk.sh"


def run(source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"IVRS_ASTERISK_SOURCE": str(source)}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_no_source_is_one_line_saying_the_suite_is_skipped(tmp_path: Path) -> None:
    result = run(tmp_path / "missing.tar.xz")
    assert result.returncode == 3
    assert result.stdout.splitlines() == [
        f"no Asterisk 22.10.1 source at {tmp_path / 'missing.tar.xz'} (set IVRS_ASTERISK_SOURCE "
        "to the release tarball): real-Asterisk suite skipped"
    ]


def test_a_source_that_is_not_the_release_is_refused_before_any_build(tmp_path: Path) -> None:
    fake = tmp_path / "asterisk-22.10.1.tar.xz"
    fake.write_bytes(b"not asterisk")
    result = run(fake)
    assert result.returncode == 1
    assert "is not the Asterisk 22.10.1 release (sha256" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
