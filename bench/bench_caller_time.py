"""Caller time: how long a returning trucker listens to prompts while bundling one CCRN, with
and without barge-in, from the built prompts' real lengths (`<sounds>/manifest.json`).

    python bench/bench_caller_time.py [--sounds var/sounds] [--barge-in-ms 1000] [--detail]

Only prompt audio counts (no keying, no backend): the floor of the call's length. With
barge-in, every prompt that takes input is cut 1 s after it starts (or plays whole when
shorter); prompts that take none (welcome, goodbye) and the letters read back while the
caller keys the next one play whole.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prompts.catalog import LANGUAGES, Catalog, Slot, default_catalog
from prompts.manifest import Manifest
from prompts.say import say_alpha
from prompts.say import slot_files as spoken_slot_files

MARK = "AB1234"
CCRN = "123456789015"
REFERENCE = "2029040112"
CROSSING = datetime(2029, 4, 1, 14, 35)


@dataclass(frozen=True)
class Step:
    prompt_id: str
    takes_input: bool
    values: Mapping[str, Any]
    echo: str = ""  # letters read back one by one as they are keyed (SAY ALPHA)


# docs/call-flow.md: language, welcome, login, menu 1, vehicle AB1234, one CCRN, submit, goodbye.
CALL = (
    Step("language.menu", True, {}),
    Step("welcome", False, {}),
    Step("login.account", True, {}),
    Step("login.password", True, {}),
    Step("login.token", True, {}),
    Step("menu.main", True, {}),
    Step("vehicle.letters", True, {}, echo="AB"),
    Step("vehicle.digits", True, {}),
    Step("vehicle.confirm", True, {"mark": MARK}),
    Step("bundle.ccrn", True, {}),
    Step("bundle.ccrn_confirm", True, {"digits": CCRN}),
    Step("bundle.more", True, {}),
    Step("bundle.submitted", True, {"digits": REFERENCE, "time": CROSSING}),
    Step("call.goodbye", False, {}),
)


def slot_files(slot: Slot, value: Any, lang: str) -> list[str]:
    return spoken_slot_files(slot.say, value, lang)  # what the IVR streams (prompts/say.py)


def step_ms(step: Step, lang: str, ms_of: Mapping[str, int], catalog: Catalog) -> int:
    """A prompt played whole: its parts, with the SAY files of its variables between them."""
    files: list[str] = []
    for part in catalog.parts(step.prompt_id, lang):
        files += (
            slot_files(part, step.values[part.name], lang)
            if isinstance(part, Slot)
            else [part.file]
        )
    missing = [f for f in files if f not in ms_of]
    if missing:
        raise LookupError(f"not built for {lang}: {', '.join(missing)}")
    return sum(ms_of[f] for f in files)


def caller_time(
    lang: str, ms_of: Mapping[str, int], catalog: Catalog, barge_in_ms: int | None = None
) -> list[tuple[str, int]]:
    """(prompt id, ms heard) per step of the call; with barge_in_ms, prompts that take input
    are cut that long after they start."""
    heard = []
    for step in CALL:
        ms = step_ms(step, lang, ms_of, catalog)
        if barge_in_ms is not None and step.takes_input:
            ms = min(ms, barge_in_ms)
        heard.append((step.prompt_id, ms))
        if step.echo:
            heard.append(("(letters read back)", sum(ms_of[f] for f in say_alpha(step.echo))))
    return heard


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sounds", type=Path, default=Path(os.environ.get("IVRS_SOUNDS_DIR", "var/sounds"))
    )
    parser.add_argument("--barge-in-ms", type=int, default=1000)
    parser.add_argument("--lang", action="append", choices=LANGUAGES, dest="langs")
    parser.add_argument("--detail", action="store_true", help="print every prompt's time")
    args = parser.parse_args(argv)
    manifest = Manifest.load(args.sounds)
    if not manifest.entries:
        print(f"no built prompts in {args.sounds}: run `ivrs prompts build` first", file=sys.stderr)
        return 2
    catalog = default_catalog()
    print(
        f"caller time of a returning trucker's one-CCRN bundle call, prompts only "
        f"({args.sounds / 'manifest.json'})"
    )
    print(f"{'language':<10}{'no barge-in':>14}{f'barge-in at {args.barge_in_ms} ms':>24}")
    for lang in args.langs or LANGUAGES:
        # Asterisk plays the English file when the language has none: so does the sum.
        ms_of = {**manifest.durations_ms("en"), **manifest.durations_ms(lang)}
        try:
            whole = caller_time(lang, ms_of, catalog)
            barged = caller_time(lang, ms_of, catalog, args.barge_in_ms)
        except LookupError as e:
            print(f"{lang:<10}{e}")
            continue
        total, cut = sum(ms for _, ms in whole), sum(ms for _, ms in barged)
        print(f"{lang:<10}{total / 1000:>12.1f} s{cut / 1000:>22.1f} s")
        if args.detail:
            for (step, ms), (_, cut_ms) in zip(whole, barged, strict=True):
                print(f"  {step:<22}{ms / 1000:>8.1f} s{cut_ms / 1000:>22.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
